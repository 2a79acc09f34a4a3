"""Per-rank RNG state in checkpoints: a stage-2 run with LoRA dropout resumed half-way ends with the weights
of an uninterrupted run bit for bit (and does not without the saved state); the state round-trips."""

import random

import numpy as np
import pytest
import torch

from tests.train.conftest import tiny_overrides
from trainer.checkpoints import read_training_checkpoint
from trainer.rng_state import capture_rng_state, restore_rng_state
from trainer.train import run


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_rng_state_round_trips_every_generator():
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    state = capture_rng_state()
    want = draws()
    draws()
    restore_rng_state(state)
    got = draws()
    assert got[:2] == want[:2] and torch.equal(got[2], want[2])


@pytest.mark.slow
def test_resumed_lora_dropout_run_equals_an_uninterrupted_one(simple_shards, stage1, tmp_path):
    _, stage1_export, _ = stage1
    common = (
        "stage=stage2_lora",
        f"stage.adapter_init={stage1_export}",
        "stage.lora.rank=4",
        "stage.lora.alpha=4",
        "stage.lora.dropout=0.1",
        "loop.checkpoint_every_n_steps=1",
    )
    full = run(tiny_overrides(simple_shards, tmp_path / "full", 2, *common))
    first = run(tiny_overrides(simple_shards, tmp_path / "part", 1, *common))
    half = read_training_checkpoint(first.last_checkpoint)
    assert set(half["talkdit"]["rng_state"]) == {"0"}
    resumed = run(tiny_overrides(simple_shards, tmp_path / "part", 2, *common, f"resume={first.last_checkpoint}"))
    a = read_training_checkpoint(full.last_checkpoint)
    b = read_training_checkpoint(resumed.last_checkpoint)
    assert a["global_step"] == b["global_step"] == 2
    assert any(".lora_" in k for k in a["state_dict"])
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k

    # The same resume from a checkpoint without the RNG state draws other dropout masks.
    del half["talkdit"]["rng_state"]
    stripped = tmp_path / "no_rng.ckpt"
    torch.save(half, stripped)
    other = run(tiny_overrides(simple_shards, tmp_path / "other", 2, *common, f"resume={stripped}"))
    c = read_training_checkpoint(other.last_checkpoint)
    assert any(not torch.equal(v, c["state_dict"][k]) for k, v in a["state_dict"].items())
