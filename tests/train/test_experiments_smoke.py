"""Every experiment runs one step: its own stage, optimiser, logger and loop settings on the tiny model.

The paper experiments name the 13B DiT and Whisper-small, whose weights CI cannot download, and
DeepSpeed on 8 GPUs; the smoke run swaps in the tiny model, audio features, generated shards and one
CPU process, and keeps everything else.
"""

import pytest

from tests.train.conftest import tiny_overrides
from tests.train.test_config import EXPERIMENTS
from trainer.checkpoints import read_training_checkpoint
from trainer.train import run


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_one_step(name, simple_shards, stage1, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = tiny_overrides(simple_shards, tmp_path / "run", 1)
    overrides[0] = f"experiment={name}"
    overrides += ["model=tiny", "audio=tiny", "objective.num_reference_frames=2", "strategy=ddp_cpu"]
    if "stage2" in name:
        _, stage1_export, _ = stage1
        overrides += [f"stage.adapter_init={stage1_export}", "stage.lora.rank=4"]
    result = run(overrides)
    ckpt = read_training_checkpoint(result.last_checkpoint)
    assert ckpt["global_step"] == 1
    assert ckpt["talkdit"]["config"]["experiment_name"] == name
