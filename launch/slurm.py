"""Render and submit SLURM jobs: multi-node training runs and data-prep array jobs.

``python -m launch.slurm job=train experiment=<name> cluster=<name> [dry_run=true] [cluster.<field>=...]
[trainer overrides]`` and ``python -m launch.slurm job=data_prep cluster=<name> input_dir=<dir>
output_dir=<dir> [data_prep overrides]``.

The launch keys (``job``, ``dry_run``, ``cluster``, ``cluster.*``; ``conf/launch.yaml``) are split from
the rest, which is forwarded to the job. The forwarded overrides are composed and validated with the
job's own loader before anything is rendered, so a bad override fails in seconds, not after a queue wait.

Training: one sbatch script per run, ``srun`` with one task per GPU (or ``tasks_per_node`` CPU ranks),
``--signal=USR1@<s>`` plus ``--requeue`` (on USR1 the trainer checkpoints and the job is requeued, see
:mod:`trainer.requeue`; the rerun continues with ``resume=auto``), the run directory
``<run_root>/<experiment>/job<id>`` holding the script, the batch log, per-rank logs, a code snapshot,
the exit status of every attempt and (written by the trainer) the resolved ``config.yaml``. The job is
submitted on hold, its run directory is created under the id SLURM gave it, and then it is released: the
batch log can only go to a folder that exists when the job starts.

Data prep: one array task per work unit of the plan (the same partition into units the local run uses);
each task runs ``python -m data_prep.run ... execution.unit_index=$SLURM_ARRAY_TASK_ID``, a rerun skips
finished units, and the task that completes the last unit merges the ledger and writes the report, so
local and array runs write identical outputs. The script lands in ``<output_dir>/slurm/``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from launch.cluster import ClusterConfig, LaunchConfig, validate_launch
from trainer.atomic import atomic_write_text
from trainer.config.cli import Command, one_line, run_command
from trainer.config.compose import compose_config, load_config, register_schema
from trainer.config.errors import ConfigError
from trainer.run_dir import REQUEUE_REQUEST

REPO = Path(__file__).resolve().parents[1]
LAUNCH_KEYS = ("job", "dry_run", "cluster")
TRAIN_SCRIPT = "train.sbatch"
DATA_PREP_SCRIPT = "data_prep.sbatch"
LAUNCH_RECORD = "launch.yaml"
EXIT_STATUS_FILE = "exit_status.tsv"
# Keys of the trainer that the launcher sets from the job and the cluster; a user value would break resume
# (run_dir, resume) or disagree with what SLURM allocates (the strategy's process layout).
_MANAGED_TRAIN_KEYS = {
    "run_dir": "the launcher names it <run_root>/<experiment>/job<SLURM job id>; set run_root instead",
    "resume": "the launcher passes resume=auto so a requeued job continues from its own run directory",
    "strategy.devices": "set by the cluster (cluster.gpus_per_node, or cluster.tasks_per_node on CPU)",
    "strategy.num_nodes": "set by the cluster (cluster.nodes)",
    "strategy.accelerator": "set by the cluster (gpu when cluster.gpus_per_node > 0, else cpu)",
}
_MANAGED_PREP_KEYS = {
    "execution.unit_index": "each array task runs the unit $SLURM_ARRAY_TASK_ID",
    "execution.workers": "one unit per array task runs in one process",
}

_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        register_schema("launch_schema", LaunchConfig)
        _registered = True


def _key(arg: str) -> str:
    return arg.lstrip("+~").split("=", 1)[0]


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Split command-line overrides into launch keys and those forwarded to the job.

    Args:
        args: ``key=value`` overrides as typed (``+``/``~`` prefixes allowed).

    Returns:
        ``(launch overrides, forwarded overrides)``, each in the order given.
    """
    ours = [a for a in args if _key(a).split(".", 1)[0] in LAUNCH_KEYS]
    return ours, [a for a in args if a not in ours]


def load_launch_config(overrides: list[str]) -> LaunchConfig:
    """Compose and validate ``conf/launch.yaml`` with the launch overrides.

    Args:
        overrides: e.g. ``["job=train", "cluster=generic_8xh100", "cluster.nodes=4"]``.

    Returns:
        The typed launch config.

    Raises:
        ConfigError: Naming the key that is unknown, mistyped, missing or breaks a rule.
    """
    _register()
    obj = load_config("launch", overrides)
    assert isinstance(obj, LaunchConfig)
    validate_launch(obj)
    return obj


def _job_config_yaml(args: list[str]) -> str:
    """``--cfg job``: the launch config, then the resolved config of the job it would run."""
    ours, forwarded = split_args(args)
    cfg = load_launch_config(ours)
    launch = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    if cfg.job == "train":
        job = compose_config("train", [*cfg.cluster.train_overrides, *forwarded])
    else:
        from data_prep.config import register

        register()
        job = compose_config("data_prep", forwarded)
    resolved = OmegaConf.to_yaml(OmegaConf.to_container(job, resolve=True, throw_on_missing=False))
    module = "trainer.train" if cfg.job == "train" else "data_prep.run"
    return f"# launch (conf/launch.yaml)\n{launch}---\n# the job: python -m {module}\n{resolved}"


COMMAND = Command(
    module="launch.slurm",
    config_name="launch",
    synopsis="job=train|data_prep cluster=<name> [dry_run=true] [cluster.<field>=...] [job overrides ...]",
    summary="""Render and submit SLURM jobs: multi-node training runs (one rank per GPU through srun, requeued on
preemption and resumed from the run directory named after the job id) and data-prep arrays (one task per work
unit; the task finishing the last unit merges the ledger). The job's overrides are checked with the job's own
rules before anything is rendered.""",
    examples=(
        "python -m launch.slurm job=train experiment=edityourself_stage1 cluster=generic_8xh100 cluster.nodes=4",
        "python -m launch.slurm job=data_prep cluster=generic_8xh100 input_dir=/data/raw output_dir=/data/prep",
        "python -m launch.slurm job=train experiment=demo cluster=local dry_run=true 'data.shards=...'",
    ),
    notes="""Every argument that is not a launch key (job, dry_run, cluster, cluster.*) goes to the job: see
python -m trainer.train --help and python -m data_prep.run --help for those keys. Keys the launcher sets itself
are refused: run_dir, resume, strategy.devices, strategy.num_nodes, strategy.accelerator (train);
execution.unit_index, execution.workers (data_prep).""",
    register=_register,
    own_overrides=lambda args: split_args(args)[0],
    config_yaml=_job_config_yaml,
)


def _refuse_managed(forwarded: list[str], managed: dict[str, str]) -> None:
    for arg in forwarded:
        key = _key(arg)
        if key in managed:
            raise ConfigError(key, arg.split("=", 1)[-1], f"is managed by launch.slurm: {managed[key]}")


def _sbatch_lines(options: list[tuple[str, object]]) -> list[str]:
    """``#SBATCH --key=value`` lines, skipping unset options; ``True`` renders a bare flag."""
    lines = []
    for key, value in options:
        if value is None or value is False:
            continue
        lines.append(f"#SBATCH --{key}" if value is True else f"#SBATCH --{key}={value}")
    return lines


def _env_lines(env: dict[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(str(value))}" for name, value in env.items()]


def _python(cluster: ClusterConfig) -> str:
    return cluster.python or sys.executable


def _common_setup(cluster: ClusterConfig, workdir: Path) -> list[str]:
    """Working directory, site setup and the environment both job kinds share."""
    lines = [
        # Relative paths in the overrides mean what they meant where the launcher ran.
        f"cd {shlex.quote(str(workdir))}",
        *cluster.setup,
        # The code that runs is the code the snapshot records, whatever the interpreter has installed.
        f"export PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}",
        "export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1",
        # One OpenMP pool per process sized to its cores; the default (all cores) oversubscribes the node.
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
        *_env_lines(cluster.env),
    ]
    return lines


def _snapshot_function() -> list[str]:
    """Bash function that records the code a job runs in ``$RUN_DIR/code`` once per job."""
    repo = shlex.quote(str(REPO))
    return [
        "snapshot_code() {",
        '  local dest="$RUN_DIR/code" tmp="$RUN_DIR/.code.tmp.$$"',
        # A requeued job keeps the snapshot of its first start: that is the code its checkpoints came from.
        '  [ -d "$dest" ] && return 0',
        '  rm -rf "$tmp" && mkdir -p "$tmp/tree" || return 1',
        f"  if git -C {repo} rev-parse --is-inside-work-tree >/dev/null 2>&1; then",
        f'    git -C {repo} rev-parse HEAD > "$tmp/commit.txt" &&',
        f'      git -C {repo} archive HEAD | tar -x -C "$tmp/tree" &&',
        f'      git -C {repo} diff HEAD --binary > "$tmp/code.diff" &&',
        f'      git -C {repo} ls-files --others --exclude-standard > "$tmp/untracked.txt" ||',
        '      { rm -rf "$tmp"; return 1; }',
        "  else",
        '    echo "not a git checkout: tree/ holds the package folders" > "$tmp/commit.txt"',
        f"    tar -C {repo} --exclude=__pycache__ -cf - conf trainer data_prep launch eval setup.cfg pyproject.toml"
        ' | tar -x -C "$tmp/tree" || { rm -rf "$tmp"; return 1; }',
        "  fi",
        '  mv -T "$tmp" "$dest"',
        "}",
    ]


@dataclass
class TrainJob:
    """A rendered training job.

    Attributes:
        script: The sbatch script text.
        experiment_dir: ``<run_root>/<experiment>`` (absolute); the run directory is ``job<id>`` inside it.
        overrides: The trainer overrides the script passes before the launcher-managed ones.
    """

    script: str
    experiment_dir: Path
    overrides: list[str]


def render_train_job(cluster: ClusterConfig, forwarded: list[str], workdir: Path | None = None) -> TrainJob:
    """Validate the trainer overrides and render the sbatch script of a training run.

    Args:
        cluster: The validated cluster config.
        forwarded: Trainer overrides from the command line (``experiment=...`` and others).
        workdir: Folder the job runs in (relative paths resolve against it); default the current one.

    Returns:
        The script and where its run directory goes.

    Raises:
        ConfigError: A forwarded override is invalid or names a key the launcher manages.
    """
    from trainer.config.compose import load_train_config

    _refuse_managed(forwarded, _MANAGED_TRAIN_KEYS)
    workdir = Path(workdir or os.getcwd()).resolve()
    overrides = [*cluster.train_overrides, *forwarded]
    ranks, nodes = cluster.ranks_per_node, cluster.nodes
    managed = [
        "resume=auto",
        f"strategy.devices={ranks}",
        f"strategy.num_nodes={nodes}",
        f"strategy.accelerator={cluster.accelerator}",
    ]
    cfg = load_train_config([*overrides, *managed])
    run_root = Path(cfg.run_root)
    experiment_dir = (run_root if run_root.is_absolute() else workdir / run_root) / cfg.experiment_name
    if any(c.isspace() for c in str(experiment_dir)):
        # #SBATCH lines are split on whitespace.
        raise ConfigError("run_root", str(experiment_dir), "run_root/experiment_name must not contain spaces")
    run_dir = f"{shlex.quote(str(experiment_dir))}/job${{SLURM_JOB_ID}}"
    gpu = cluster.gpus_per_node > 0
    header = [
        "#!/bin/bash",
        f"# Rendered by `python -m launch.slurm` on {time.strftime('%Y-%m-%d %H:%M:%S')}: training run of "
        f"experiment {cfg.experiment_name} on cluster {cluster.name} ({nodes} node(s) x {ranks} rank(s)).",
        *_sbatch_lines(
            [
                ("job-name", f"{cluster.job_name}-{cfg.experiment_name}"),
                ("nodes", nodes),
                ("ntasks-per-node", ranks),
                ("gpus-per-node", cluster.gpus_per_node if gpu else None),
                ("cpus-per-task", cluster.cpus_per_task),
                ("mem", cluster.mem),
                ("time", cluster.time),
                ("partition", cluster.partition),
                ("account", cluster.account),
                ("qos", cluster.qos),
                ("constraint", cluster.constraint),
                ("exclusive", cluster.exclusive),
                # The warning signal: checkpoint and requeue (trainer.requeue, or Lightning's SLURM plugin).
                ("signal", f"USR1@{cluster.requeue_signal_seconds}" if cluster.requeue_signal_seconds else None),
                ("requeue", True),
                # A requeued job appends to its log instead of truncating what the earlier attempt wrote.
                ("open-mode", "append"),
                ("output", f"{experiment_dir}/job%j/slurm-%j.out"),
            ]
        ),
        *[f"#SBATCH {line}" for line in cluster.extra_sbatch],
    ]
    port = str(cluster.master_port) if cluster.master_port else "$((20000 + SLURM_JOB_ID % 20000))"
    command = [_python(cluster), "-m", "trainer.train", *overrides]
    srun = [
        "srun",
        # One failed rank ends the step instead of leaving the others blocked in a collective.
        "--kill-on-bad-exit=1",
        # srun of SLURM 22.05 does not inherit the batch allocation's --cpus-per-task.
        '--cpus-per-task="$SLURM_CPUS_PER_TASK"',
        '--output="$RUN_DIR/ranks/attempt${ATTEMPT}.rank%t.log"',
        "--open-mode=append",
    ]
    body = [
        # No -e: the exit status of the training step is recorded before the script exits with it.
        "set -uo pipefail",
        f"RUN_DIR={run_dir}",
        "ATTEMPT=${SLURM_RESTART_COUNT:-0}",
        'mkdir -p "$RUN_DIR/ranks"',
        f'rm -f "$RUN_DIR/{REQUEUE_REQUEST}"  # a request is for the attempt that wrote it',
        'echo "job $SLURM_JOB_ID attempt $ATTEMPT on $SLURM_JOB_NODELIST, $(date -Is)"',
        *_common_setup(cluster, workdir),
        # Rendezvous: rank 0 runs on the first node of the allocation.
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f"export MASTER_PORT={port}",
        *(_env_lines(cluster.nccl_env) if gpu else []),
        *_snapshot_function(),
        'snapshot_code || echo "warning: could not snapshot the code into $RUN_DIR/code" >&2',
        " ".join(srun)
        + " \\\n  "
        + " ".join(shlex.quote(c) for c in command)
        + ' \\\n  "run_dir=$RUN_DIR" '
        + " ".join(managed),
        "status=$?",
        'printf "%s\\t%s\\t%s\\t%s\\n" "$SLURM_JOB_ID" "$ATTEMPT" "$status" "$(date -Is)" \\',
        f'  >> "$RUN_DIR/{EXIT_STATUS_FILE}"',
        'echo "training step exited with status $status"',
        # trainer.requeue.RequeueOnSignal saved a checkpoint on the warning signal and stopped: put the job back
        # in the queue; the next attempt continues from that checkpoint (resume=auto).
        f'if [ -e "$RUN_DIR/{REQUEUE_REQUEST}" ]; then',
        f'  rm -f "$RUN_DIR/{REQUEUE_REQUEST}"',
        '  echo "checkpointed on the requeue signal: requeueing job $SLURM_JOB_ID"',
        '  scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$status"',
        "",
    ]
    return TrainJob(script="\n".join(header + body), experiment_dir=experiment_dir, overrides=overrides)


def render_data_prep_script(
    cluster: ClusterConfig, prep_args: list[str], num_units: int, output_dir: Path, workdir: Path | None = None
) -> str:
    """The sbatch script of a data-prep array job with ``num_units`` tasks.

    Args:
        cluster: The validated cluster config (``cluster.data_prep`` sizes the tasks).
        prep_args: ``data_prep.run`` overrides (validated by the caller).
        num_units: Work units of the plan; task ``i`` runs unit ``i``.
        output_dir: The data-prep output folder (absolute); logs go to ``<output_dir>/slurm/``.
        workdir: Folder the tasks run in; default the current one.

    Returns:
        The script text.
    """
    workdir = Path(workdir or os.getcwd()).resolve()
    res = cluster.data_prep
    throttle = f"%{res.max_parallel}" if res.max_parallel else ""
    header = [
        "#!/bin/bash",
        f"# Rendered by `python -m launch.slurm` on {time.strftime('%Y-%m-%d %H:%M:%S')}: data_prep array of "
        f"{num_units} work unit(s) on cluster {cluster.name}.",
        *_sbatch_lines(
            [
                ("job-name", f"{cluster.job_name}-data-prep"),
                ("array", f"0-{num_units - 1}{throttle}"),
                ("nodes", 1),
                ("ntasks", 1),
                ("cpus-per-task", res.cpus_per_task),
                ("gpus-per-task", res.gpus_per_task or None),
                ("mem", res.mem),
                ("time", res.time),
                ("partition", res.partition or cluster.partition),
                ("account", cluster.account),
                ("qos", cluster.qos),
                ("constraint", cluster.constraint),
                # A preempted task reruns; the unit it was on is redone, finished units are skipped.
                ("requeue", True),
                ("output", f"{output_dir}/slurm/%A_%a.out"),
            ]
        ),
        *[f"#SBATCH {line}" for line in cluster.extra_sbatch],
    ]
    command = [_python(cluster), "-m", "data_prep.run", *prep_args]
    body = [
        "set -euo pipefail",
        *_common_setup(cluster, workdir),
        " ".join(shlex.quote(c) for c in command)
        + ' execution.unit_index="${SLURM_ARRAY_TASK_ID}" execution.workers=1',
        "",
    ]
    return "\n".join(header + body)


def _sbatch() -> str:
    found = shutil.which("sbatch")
    if found is None:
        raise RuntimeError(
            "sbatch not found on PATH: submitting needs a SLURM client (a login node, or "
            "`python -m launch.local_slurm start`); dry_run=true only renders the script"
        )
    return found


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def _job_id(parsable: str) -> str:
    # --parsable prints "<id>" or "<id>;<cluster>".
    job = parsable.split(";", 1)[0].strip()
    if not re.fullmatch(r"\d+", job):
        raise RuntimeError(f"sbatch printed no job id: {parsable!r}")
    return job


def _launch_record(cfg: LaunchConfig, forwarded: list[str], argv: list[str]) -> str:
    record = {
        "argv": argv,
        "job": cfg.job,
        "forwarded_overrides": forwarded,
        "cluster": OmegaConf.to_container(OmegaConf.structured(cfg.cluster)),
        "rendered_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return OmegaConf.to_yaml(OmegaConf.create(record))


def submit_train(job: TrainJob, record: str) -> tuple[str, Path]:
    """Submit a rendered training job: on hold, create its run directory, then release it.

    Args:
        job: The rendered job.
        record: Text of ``launch.yaml`` for the run directory.

    Returns:
        ``(job id, run directory)``.

    Raises:
        RuntimeError: ``sbatch`` is missing or SLURM refused the job (its message is included).
    """
    sbatch = _sbatch()
    job.experiment_dir.mkdir(parents=True, exist_ok=True)
    staged = job.experiment_dir / f".submit-{os.getpid()}-{time.time_ns()}.sbatch"
    atomic_write_text(staged, job.script)
    try:
        job_id = _job_id(_run([sbatch, "--hold", "--parsable", str(staged)]))
    except Exception:
        staged.unlink(missing_ok=True)
        raise
    run_dir = job.experiment_dir / f"job{job_id}"
    try:
        (run_dir / "ranks").mkdir(parents=True, exist_ok=True)
        staged.replace(run_dir / TRAIN_SCRIPT)
        atomic_write_text(run_dir / LAUNCH_RECORD, record)
        _run(["scontrol", "release", job_id])
    except Exception:
        # A held job nobody releases would sit in the queue forever.
        subprocess.run(["scancel", job_id], capture_output=True)
        raise
    return job_id, run_dir


def _main_train(cfg: LaunchConfig, forwarded: list[str], argv: list[str]) -> int:
    if not cfg.dry_run:
        _sbatch()  # fail before rendering when nothing could be submitted
    job = render_train_job(cfg.cluster, forwarded)
    record = _launch_record(cfg, forwarded, argv)
    if cfg.dry_run:
        out = job.experiment_dir / "dry_run"
        atomic_write_text(out / TRAIN_SCRIPT, job.script)
        atomic_write_text(out / LAUNCH_RECORD, record)
        print(f"rendered: {out / TRAIN_SCRIPT}")
        print("dry run: not submitted (the same command without dry_run=true submits it)")
        return 0
    job_id, run_dir = submit_train(job, record)
    print(f"rendered: {run_dir / TRAIN_SCRIPT}")
    print(f"submitted job {job_id}: run directory {run_dir} (batch log slurm-{job_id}.out, ranks/ per-rank logs)")
    return 0


def _main_data_prep(cfg: LaunchConfig, forwarded: list[str]) -> int:
    from data_prep.run import load_config
    from data_prep.units import array_size, list_inputs

    if not cfg.dry_run:
        _sbatch()
    _refuse_managed(forwarded, _MANAGED_PREP_KEYS)
    prep = load_config(forwarded)
    units = array_size(len(list_inputs(prep)), prep.execution.videos_per_unit)
    if units == 0:
        raise FileNotFoundError("no input video found (input_dir / input_list)")
    out = Path(prep.output_dir).resolve()
    script = out / "slurm" / DATA_PREP_SCRIPT
    atomic_write_text(script, render_data_prep_script(cfg.cluster, forwarded, units, out))
    print(f"rendered: {script} (array of {units} task(s))")
    if cfg.dry_run:
        print(f"dry run: not submitted (submit with: sbatch {script})")
        return 0
    job_id = _job_id(_run([_sbatch(), "--parsable", str(script)]))
    print(f"submitted job {job_id}: array of {units} task(s), logs in {out / 'slurm'}")
    return 0


def _launch(args: list[str]) -> int:
    ours, forwarded = split_args(args)
    cfg = load_launch_config(ours)
    if cfg.job == "train":
        return _main_train(cfg, forwarded, args)
    return _main_data_prep(cfg, forwarded)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; a bad override exits with status 2, a refused submission with 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_command(COMMAND, args, _launch)
    except RuntimeError as err:  # sbatch missing or refusing: the input was fine, the cluster said no
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
