"""Training through ``python -m trainer.train`` under DeepSpeed ZeRO-2/3 and FSDP2 on CPU (2 processes,
gloo), with Ulysses sequence parallelism over both ranks so that the run must equal the same run in one
process: same losses, gradient norms, weights, export, and an exact resume."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.parallel.test_sp_training import logged
from tests.ports import free_port
from tests.train.conftest import tiny_overrides
from tests.train.shards import write_simple_shards
from trainer.checkpoints import read_training_checkpoint
from trainer.export import export_checkpoint
from trainer.train import run

# AdamW: Muon under sharding is checked at the optimizer level (test_deepspeed.py, test_fsdp.py); here
# weights are compared after several steps, where Muon's bf16 Newton-Schulz would turn summation-order
# noise into 1e-2 drift.
COMMON = ("optim=adamw", "loop.checkpoint_every_n_steps=2")
STEPS = 4
STRATEGIES = {
    "zero2": ("strategy=deepspeed_cpu", "strategy.zero_stage=2"),
    "zero3": ("strategy=deepspeed_cpu", "strategy.zero_stage=3"),
    "fsdp": ("strategy=fsdp_cpu", "strategy.devices=2"),
}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepspeed")
    write_simple_shards(root / "shards", num_clips=4, per_shard=2)
    shards = f"{root}/shards/*.tar"
    return shards, run(tiny_overrides(shards, root / "single", STEPS, *COMMON))


def sharded_run(shards, run_dir, strategy, *extra):
    overrides = tiny_overrides(shards, run_dir, STEPS, *COMMON, *STRATEGIES[strategy], "parallel=ulysses", *extra)
    env = {**os.environ, "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", *overrides], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def assert_same_training(single_dir, other_dir, single_ckpt, other_ckpt):
    for column in ("train/loss", "train/grad_norm_adamw"):
        want, got = logged(single_dir, column), logged(other_dir, column)
        assert got and got.keys() <= want.keys() and max(got) == max(want), column
        for step, value in got.items():
            assert value == pytest.approx(want[step], rel=1e-4), (column, step)
    a = read_training_checkpoint(single_ckpt)
    b = read_training_checkpoint(other_ckpt)
    assert b["global_step"] == a["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], value, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_sharded_run_equals_the_run_in_one_process(single, strategy, tmp_path):
    if strategy != "fsdp":
        pytest.importorskip("deepspeed")
    shards, one = single
    run_dir = tmp_path / "run"
    sharded_run(shards, run_dir, strategy)
    last = run_dir / "checkpoints" / "last.ckpt"
    if strategy == "fsdp":
        assert last.is_file()  # one file with the gathered trainable tensors and optimizer state
    else:
        # A DeepSpeed folder holding only the trainable tensors, beside the generated JSON.
        assert (last / "latest").read_text().strip() == "checkpoint"
        assert not list(run_dir.glob("checkpoints/*.partial"))
        ds = json.loads((run_dir / "deepspeed_config.json").read_text())
        assert ds["zero_optimization"]["stage"] == int(strategy[-1]) and ds["gradient_clipping"] == 0
        assert "optimizer" not in ds and "scheduler" not in ds
    assert logged(run_dir, "train/loss").keys() == logged(one.run_dir, "train/loss").keys()
    assert_same_training(one.run_dir, run_dir, one.last_checkpoint, last)

    # Export reads the sharded run's checkpoint into the same adapter file as the one-process run's.
    want = load_file(export_checkpoint(one.last_checkpoint, tmp_path / "export_one")["audio_adapter"])
    got = load_file(export_checkpoint(last, tmp_path / "export_sharded")["audio_adapter"])
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["zero2", "fsdp"])
def test_sharded_resume_continues_exactly(single, strategy, tmp_path):
    if strategy != "fsdp":
        pytest.importorskip("deepspeed")
    shards, one = single
    first = tmp_path / "first"
    sharded_run(shards, first, strategy)
    resumed = tmp_path / "resumed"
    sharded_run(shards, resumed, strategy, f"resume={first}/checkpoints/step0000002.ckpt")
    # The resumed run logged steps 2..3 only; those and its final weights equal the uninterrupted run's.
    assert min(logged(resumed, "train/loss")) == 2
    assert_same_training(one.run_dir, resumed, one.last_checkpoint, resumed / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_zero3_data_parallel_run_with_different_captions_per_rank(single, tmp_path):
    # Without sequence parallelism the ranks read different clips (different captions). ZeRO-3 partitions
    # the frozen text encoder too, so every rank must run it every step; a caption cache hit on one rank
    # used to leave the other waiting in the parameter gather.
    shards, _ = single
    overrides = tiny_overrides(shards, tmp_path / "run", STEPS, *COMMON, *STRATEGIES["zero3"])
    env = {**os.environ, "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", *overrides], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert read_training_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == STEPS
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("last*")) == ["last.ckpt"]
