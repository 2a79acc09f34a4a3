"""Kill -9 a two-process training run mid-way, rerun it with ``resume=auto``: the weights, optimiser
state and data position at the last step equal those of a run that was never interrupted."""

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from tests.ports import free_port
from tests.train.conftest import tiny_overrides
from tests.train.shards import write_simple_shards
from trainer.checkpoints import read_training_checkpoint
from trainer.run_dir import auto_resume_checkpoint

STEPS = 40


def command(shards, run_dir):
    overrides = tiny_overrides(
        shards,
        run_dir,
        STEPS,
        "strategy.devices=2",
        "loop.deterministic=true",
        "loop.checkpoint_every_n_steps=5",
        "data.num_workers=1",
        "data.shuffle_buffer=2",
        "resume=auto",
    )
    return [sys.executable, "-m", "trainer.train", *overrides]


def assert_same_tree(a, b, where: str) -> None:
    """Nested dicts/lists of tensors and numbers are equal, tensors bit for bit."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def env():
    return {**os.environ, "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    write_simple_shards(tmp_path / "shards", num_clips=4, per_shard=1)
    shards = f"{tmp_path}/shards/*.tar"
    full = subprocess.run(command(shards, tmp_path / "full"), capture_output=True, text=True, env=env(), timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]

    run_dir = tmp_path / "killed"
    # Its own session: kill -9 reaches the launching rank and the rank Lightning started, as a node failure would.
    proc = subprocess.Popen(
        command(shards, run_dir),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoints" / "step0000010.ckpt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    found = auto_resume_checkpoint(SimpleNamespace(run_dir=str(run_dir)))
    killed_at = read_training_checkpoint(found)["global_step"]
    assert 10 <= killed_at < STEPS, killed_at  # it really stopped mid-way

    resumed = subprocess.run(command(shards, run_dir), capture_output=True, text=True, env=env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resume=auto: continuing from {found}" in resumed.stderr + resumed.stdout
    a = read_training_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = read_training_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == STEPS
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("last*")) == ["last.ckpt"]
    assert a["talkdit"]["data_position"] == b["talkdit"]["data_position"]
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert_same_tree(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
