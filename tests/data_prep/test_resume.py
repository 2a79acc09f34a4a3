"""Kill -9 mid-run and rerun: the same ledger and shards as an uninterrupted run; SLURM array jobs
(the script ``launch.slurm`` renders, run task by task with bash and submitted to a real local SLURM)
give identical outputs too."""

import os
import re
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from data_prep.ledger import RUN_DEPENDENT
from launch.slurm import main as launch_main
from tests.data_prep.conftest import prep_overrides


def cli(args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "data_prep.run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def outputs(out):
    """Ledger rows without run-dependent columns, and the bytes of every shard file."""
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    for r in rows:
        for col in RUN_DEPENDENT:
            r.pop(col)
        r["source"] = os.path.basename(r["source"])
    shards = {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}
    return rows, shards


@pytest.fixture(scope="module")
def reference(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = cli(prep_overrides(small_corpus, out))
    assert proc.wait(timeout=900) == 0, proc.stderr.read()[-2000:]
    return outputs(out)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(small_corpus, reference, tmp_path):
    out = tmp_path / "out"
    proc = cli(prep_overrides(small_corpus, out))
    marker = out / "units" / "unit-00000.json"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    # Kill once unit 1 has begun writing its shard (a temp file, or the finished shard on a fast machine).
    while not any((out / "shards").glob("*u00001-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "ledger.parquet").exists()
    again = cli(prep_overrides(small_corpus, out))
    assert again.wait(timeout=900) == 0, again.stderr.read()[-2000:]
    assert outputs(out) == reference


def render_array(corpus, out, *extra):
    args = ["job=data_prep", "cluster=local", *extra, *prep_overrides(corpus, out)]
    assert launch_main(args) == 0
    return out / "slurm" / "data_prep.sbatch"


@pytest.mark.slow
def test_rendered_slurm_array_equals_the_local_run(small_corpus, reference, tmp_path):
    out = tmp_path / "out"
    script = render_array(
        small_corpus, out, "dry_run=true", "cluster.partition=cpu", "cluster.data_prep.max_parallel=2"
    )
    text = script.read_text()
    assert "#SBATCH --array=0-1%2" in text and "#SBATCH --partition=cpu" in text
    for task in (1, 0):  # array tasks finish in any order; the one completing the last unit merges
        proc = subprocess.run(
            ["bash", str(script)],
            capture_output=True,
            text=True,
            env={**os.environ, "SLURM_ARRAY_TASK_ID": str(task)},
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert outputs(out) == reference


@pytest.mark.slow
def test_slurm_array_job_equals_the_local_run(local_slurm, small_corpus, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setenv("SLURM_CONF", str(local_slurm.conf))  # launch.slurm submits from this process
    render_array(small_corpus, out)
    job = re.search(r"submitted job (\d+)", capsys.readouterr().out).group(1)
    records = local_slurm.wait(job, timeout=900)
    logs = "\n".join(p.read_text()[-1500:] for p in sorted((out / "slurm").glob("*.out")))
    assert len(records) == 2, records  # one task per work unit
    assert all(r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0" for r in records), (records, logs)
    assert outputs(out) == reference


@pytest.mark.slow
def test_process_pool_equals_the_in_process_run(small_corpus, reference, tmp_path):
    out = tmp_path / "out"
    proc = cli(prep_overrides(small_corpus, out, "execution.workers=2"))
    assert proc.wait(timeout=900) == 0, proc.stderr.read()[-2000:]
    assert outputs(out) == reference
