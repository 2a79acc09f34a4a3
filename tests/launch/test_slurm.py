"""``python -m launch.slurm``: rendered scripts for both clusters, early config errors, and real jobs on a
single-node SLURM started on this machine (the ``local_slurm`` fixture)."""

import csv
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from launch.slurm import main
from tests.train.shards import write_simple_shards
from trainer.run_dir import metrics_files

# 64x64 clips of 17 frames (3 latent frames of 2x2 tokens, two clips per batch); the demo experiment's
# learning rates, at which the tiny model visibly learns within a few dozen steps.
TINY = [
    "experiment=smoke",
    "data.max_frames=17",
    "data.tokens_per_batch=24",
    "data.min_megapixels=0.004096",
    "data.max_megapixels=0.004096",
    "data.num_workers=0",
    "loop.log_every_n_steps=1",
    "loop.progress_bar=false",
]


def train_args(tmp_path, *extra):
    return [
        "job=train",
        "cluster=local",
        f"run_root={tmp_path}/runs",
        f"data.shards={tmp_path}/shards/*.tar",
        *TINY,
        *extra,
    ]


def rendered(tmp_path, *args):
    assert main(list(args)) == 0
    return (tmp_path / "runs" / "smoke" / "dry_run" / "train.sbatch").read_text()


def bash_syntax_ok(script: str) -> None:
    proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_dry_run_on_the_local_cluster(tmp_path):
    script = rendered(tmp_path, *train_args(tmp_path, "dry_run=true", "loop.max_steps=7"))
    run_root = f"{tmp_path}/runs/smoke"
    for line in (
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=2",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --time=01:00:00",
        "#SBATCH --signal=USR1@30",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={run_root}/job%j/slurm-%j.out",
        f"RUN_DIR={run_root}/job${{SLURM_JOB_ID}}",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
    ):
        assert line in script.splitlines(), line
    assert "--gpus-per-node" not in script and "NCCL" not in script and "--partition" not in script
    srun = script[script.index("\nsrun ") :]
    assert f"{sys.executable} -m trainer.train run_root={tmp_path}/runs" in srun and " experiment=smoke " in srun
    assert "loop.max_steps=7" in srun and f"'data.shards={tmp_path}/shards/*.tar'" in srun
    assert '"run_dir=$RUN_DIR" resume=auto strategy.devices=2 strategy.num_nodes=1 strategy.accelerator=cpu' in srun
    assert '--output="$RUN_DIR/ranks/attempt${ATTEMPT}.rank%t.log"' in srun
    assert "exit_status.tsv" in script and "snapshot_code" in script
    bash_syntax_ok(script)


def test_dry_run_on_the_generic_gpu_cluster(tmp_path):
    script = rendered(
        tmp_path,
        *train_args(tmp_path, "dry_run=true"),
        "cluster=generic_8xh100",
        "cluster.partition=gpu",
        "cluster.account=proj",
        "cluster.qos=high",
        "cluster.constraint=h100",
        "cluster.nodes=4",
        "cluster.master_port=29500",
    )
    lines = script.splitlines()
    for line in (
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --cpus-per-task=12",
        "#SBATCH --mem=0",
        "#SBATCH --time=24:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=h100",
        "#SBATCH --exclusive",
        "#SBATCH --signal=USR1@120",
        "#SBATCH --requeue",
        "export MASTER_PORT=29500",
        "export TORCH_NCCL_ASYNC_ERROR_HANDLING=1",
        "export NCCL_DEBUG=WARN",
        "export NCCL_SOCKET_IFNAME='^lo,docker'",
    ):
        assert line in lines, line
    assert "strategy.devices=8 strategy.num_nodes=4 strategy.accelerator=gpu" in script
    bash_syntax_ok(script)


@pytest.mark.parametrize(
    ("arg", "key"),
    [
        ("loop.max_stepz=3", "loop.max_stepz"),  # unknown trainer key
        ("data.max_frames=16", "data.max_frames"),  # breaks the 8k+1 rule
        ("run_dir=/somewhere", "run_dir"),  # managed by the launcher
        ("strategy.devices=4", "strategy.devices"),
        ("cluster.nodes=0", "cluster.nodes"),
        ("cluster.time=forever", "cluster.time"),
        ("cluster.tasks_per_node=3", "cluster.tasks_per_node"),  # on the GPU cluster: one task per GPU
        ("cluster.bogus=1", "cluster.bogus"),
    ],
)
def test_a_bad_override_fails_before_anything_is_rendered(tmp_path, capsys, arg, key):
    extra = ["cluster=generic_8xh100"] if key == "cluster.tasks_per_node" else []
    started = time.monotonic()
    assert main([*train_args(tmp_path, "dry_run=true"), *extra, arg]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err, err
    assert time.monotonic() - started < 30
    assert not (tmp_path / "runs").exists()


def test_missing_job_and_missing_sbatch_are_clear_errors(tmp_path, capsys, monkeypatch):
    assert main([a for a in train_args(tmp_path) if a != "job=train"]) == 2
    assert "'job'" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    assert main(train_args(tmp_path)) == 1
    assert "sbatch not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_data_prep_dry_run_renders_one_task_per_unit(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b", "c"):
        (videos / f"{name}.mp4").write_bytes(b"")  # only listed here, never decoded
    out = tmp_path / "prep"
    args = [
        "job=data_prep",
        "cluster=local",
        "dry_run=true",
        "cluster.partition=cpu",
        "cluster.data_prep.max_parallel=2",
        f"input_dir={videos}",
        f"output_dir={out}",
        "audio=tiny",
        "execution.videos_per_unit=2",
    ]
    assert main(args) == 0
    script = (out / "slurm" / "data_prep.sbatch").read_text()
    lines = script.splitlines()
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --partition=cpu", f"#SBATCH --output={out}/slurm/%A_%a.out"):
        assert line in lines, line
    assert 'execution.unit_index="${SLURM_ARRAY_TASK_ID}" execution.workers=1' in script
    assert main([*args, "execution.unit_index=0"]) == 2
    bash_syntax_ok(script)


# ---- real jobs on a local SLURM -------------------------------------------------------------------------


def submit(cluster, args) -> tuple[str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "launch.slurm", *args], capture_output=True, text=True, env=cluster.env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = re.search(r"submitted job (\d+)", proc.stdout)
    assert job, proc.stdout
    return job.group(1), proc.stdout


def job_diagnostics(run_dir: Path) -> str:
    parts = []
    for path in sorted([*run_dir.glob("slurm-*.out"), *run_dir.glob("ranks/*.log")]):
        parts.append(f"--- {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-25:]))
    return "\n".join(parts)


def logged_losses(run_dir: Path) -> list[float]:
    losses = {}
    for path in metrics_files(run_dir):
        with open(path) as fh:
            for row in csv.DictReader(fh):
                if row.get("train/loss"):
                    losses[int(row["step"])] = float(row["train/loss"])  # a resumed step replaces its first try
    return [losses[s] for s in sorted(losses)]


def final_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True, mmap=True)[
        "global_step"
    ]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_train")
    write_simple_shards(root / "shards", num_clips=4, per_shard=1)
    return root


@pytest.mark.slow
def test_training_job_on_a_real_slurm(local_slurm, shards):
    steps = 60
    job, _ = submit(local_slurm, train_args(shards, f"loop.max_steps={steps}", "loop.checkpoint_every_n_steps=20"))
    run_dir = shards / "runs" / "smoke" / f"job{job}"
    (record,) = local_slurm.wait(job, timeout=300)
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", (record, job_diagnostics(run_dir))
    assert (run_dir / "exit_status.tsv").read_text().split("\t")[:3] == [job, "0", "0"]
    assert (run_dir / f"slurm-{job}.out").is_file() and (run_dir / "train.sbatch").is_file()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (run_dir / "ranks" / "attempt0.rank1.log").read_text()
    # Checkpoints, the resolved config and the code snapshot live in the job-id run directory.
    assert final_step(run_dir) == steps
    assert (run_dir / "checkpoints" / "step0000040.ckpt").is_file()
    config = (run_dir / "config.yaml").read_text()
    assert f"run_dir: {run_dir}" in config and "devices: 2" in config
    code = run_dir / "code"
    assert (code / "tree" / "trainer" / "train.py").is_file()
    # Committed files are in the archive of HEAD, new ones are listed (this file too, before its commit).
    untracked = (code / "untracked.txt").read_text().splitlines()
    assert (code / "tree" / "tests" / "launch" / "test_slurm.py").is_file() or "tests/launch/test_slurm.py" in untracked
    assert re.fullmatch(r"[0-9a-f]{40}\n", (code / "commit.txt").read_text())
    assert (code / "code.diff").is_file()
    # The loss falls: single-step losses are noisy (a new timestep every step), so compare averages.
    losses = logged_losses(run_dir)
    assert len(losses) == steps
    early, late = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert late < 0.85 * early, (early, late, losses)


@pytest.mark.slow
def test_a_requeued_job_resumes_from_its_run_directory(local_slurm, shards):
    steps = 150
    job, _ = submit(
        local_slurm,
        train_args(shards, f"loop.max_steps={steps}", "loop.checkpoint_every_n_steps=20", "experiment_name=requeue"),
    )
    run_dir = shards / "runs" / "requeue" / f"job{job}"
    deadline = time.monotonic() + 180
    # Requeue once step 40's checkpoint and the metrics row of its last step (index 39) are both written:
    # Lightning saves a step's checkpoint before it logs that step, so a kill in between loses that one row
    # (the resumed attempt starts after it).
    while not (run_dir / "checkpoints" / "step0000040.ckpt").exists() or len(logged_losses(run_dir)) < 40:
        assert time.monotonic() < deadline, job_diagnostics(run_dir)
        assert local_slurm.jobs(job)[0]["JobState"] in ("PENDING", "RUNNING"), job_diagnostics(run_dir)
        time.sleep(0.5)
    snapshot = (run_dir / "code" / "commit.txt").stat().st_mtime_ns
    # What a scheduler does when it preempts a job or loses its node: kill it and put it back in the queue.
    local_slurm.run("scontrol", "requeue", job)
    deadline = time.monotonic() + 120
    while local_slurm.jobs(job)[0]["JobState"] != "PENDING":
        assert time.monotonic() < deadline, local_slurm.jobs(job)
        time.sleep(0.5)
    # SLURM holds a requeued job back for two minutes (BeginTime); an admin may let it start sooner.
    local_slurm.start_requeued_now(job)
    (record,) = local_slurm.wait(job, timeout=300)
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", (record, job_diagnostics(run_dir))
    assert record["Restarts"] == "1"
    rank0 = (run_dir / "ranks" / "attempt1.rank0.log").read_text()
    assert "resume=auto: continuing from" in rank0, job_diagnostics(run_dir)
    assert final_step(run_dir) == steps
    assert len(metrics_files(run_dir)) == 2  # one CSV version per attempt
    assert len(logged_losses(run_dir)) == steps
    statuses = [line.split("\t") for line in (run_dir / "exit_status.tsv").read_text().splitlines()]
    assert [s[1:3] for s in statuses] == [["1", "0"]]  # the killed attempt never reached its status line
    assert (run_dir / "code" / "commit.txt").stat().st_mtime_ns == snapshot  # first snapshot kept


@pytest.mark.slow
def test_usr1_checkpoints_requeues_and_resumes(local_slurm, shards):
    steps = 150
    job, _ = submit(
        local_slurm,
        train_args(shards, f"loop.max_steps={steps}", "loop.checkpoint_every_n_steps=20", "experiment_name=usr1"),
    )
    run_dir = shards / "runs" / "usr1" / f"job{job}"
    deadline = time.monotonic() + 180
    while not (run_dir / "checkpoints" / "step0000020.ckpt").exists():
        assert time.monotonic() < deadline, job_diagnostics(run_dir)
        time.sleep(0.5)
    # What SLURM sends requeue_signal_seconds before the time limit (or a scheduler before preempting).
    local_slurm.run("scancel", "--signal=USR1", job)
    deadline = time.monotonic() + 120
    while local_slurm.jobs(job)[0]["JobState"] != "PENDING":
        assert time.monotonic() < deadline, (local_slurm.jobs(job), job_diagnostics(run_dir))
        time.sleep(0.5)
    local_slurm.start_requeued_now(job)
    (record,) = local_slurm.wait(job, timeout=300)
    assert record["JobState"] == "COMPLETED" and record["Restarts"] == "1", (record, job_diagnostics(run_dir))
    assert "requeueing job" in (run_dir / f"slurm-{job}.out").read_text()
    rank0 = (run_dir / "ranks" / "attempt1.rank0.log").read_text()
    assert f"resume=auto: continuing from {run_dir}/checkpoints/last.ckpt" in rank0, job_diagnostics(run_dir)
    statuses = [line.split("\t")[1:3] for line in (run_dir / "exit_status.tsv").read_text().splitlines()]
    assert statuses == [["0", "0"], ["1", "0"]]  # the signalled attempt stopped cleanly after its checkpoint
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("last*")) == ["last.ckpt"]
    assert final_step(run_dir) == steps
    assert len(logged_losses(run_dir)) == steps


@pytest.fixture(scope="module")
def two_node_slurm():
    """Two SLURM nodes, each a slurmd in its own network namespace; skips where namespaces are not allowed."""
    from launch.local_slurm import LocalSlurmUnavailable, start_local_slurm
    from launch.local_slurm_cluster import LocalSlurmStartError

    try:
        cluster = start_local_slurm(nodes=2)
    except (LocalSlurmUnavailable, LocalSlurmStartError) as err:
        pytest.skip(f"no two-node local SLURM: {err}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.slow
def test_two_node_training_job(two_node_slurm, shards):
    steps = 20
    job, _ = submit(
        two_node_slurm,
        train_args(
            shards,
            f"loop.max_steps={steps}",
            "loop.checkpoint_every_n_steps=10",
            "experiment_name=two_nodes",
            "cluster.nodes=2",
            "cluster.tasks_per_node=1",
        ),
    )
    run_dir = shards / "runs" / "two_nodes" / f"job{job}"
    (record,) = two_node_slurm.wait(job, timeout=300)
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", (record, job_diagnostics(run_dir))
    assert record["NumNodes"] == "2" and record["NodeList"] == "talkdit-n[1-2]", record
    # One rank per node; rank 1 reached rank 0's rendezvous on the first node across the bridge.
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (run_dir / "ranks" / "attempt0.rank1.log").read_text()
    assert "num_nodes: 2" in (run_dir / "config.yaml").read_text()
    assert final_step(run_dir) == steps
