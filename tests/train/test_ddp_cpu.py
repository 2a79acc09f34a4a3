"""strategy=ddp_cpu with two processes: DDP over gloo through the real CLI, one sample per rank."""

import csv
import os
import subprocess
import sys

import pytest

from tests.ports import free_port
from tests.train.conftest import tiny_overrides
from tests.train.shards import write_simple_shards
from trainer.checkpoints import read_training_checkpoint
from trainer.run_dir import metrics_files


@pytest.mark.slow
def test_two_process_ddp_run(tmp_path):
    write_simple_shards(tmp_path / "shards", num_clips=4, per_shard=1)
    # 12 tokens per batch: one clip per rank, so contrastive negatives must come from the other rank.
    overrides = tiny_overrides(
        f"{tmp_path}/shards/*.tar", tmp_path / "run", 3, "strategy.devices=2", "data.tokens_per_batch=12"
    )
    # No run_dir: both ranks must agree on the timestamped default under run_root.
    overrides = [o for o in overrides if not o.startswith("run_dir=")] + [f"run_root={tmp_path}/runs"]
    env = {**os.environ, "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", *overrides], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr + proc.stdout
    run_dirs = list((tmp_path / "runs" / "smoke").iterdir())
    assert len(run_dirs) == 1, run_dirs
    ckpt = read_training_checkpoint(run_dirs[0] / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert ckpt["talkdit"]["config"]["strategy"]["devices"] == 2
    assert set(ckpt["talkdit"]["rng_state"]) == {"0", "1"}  # every rank's RNG state, for an exact resume
    with open(metrics_files(run_dirs[0])[-1]) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train/loss")]
    assert rows and {r["train/contrastive_negatives"] for r in rows} == {"2.0"}
