"""AnyExpress's schedule: a joint adapter + LoRA stage, then a stage that restores the DiT (or continues it)."""

import dataclasses

import pytest
import torch

from tests.train.conftest import tiny_overrides
from tests.train.test_export import fixed_inputs, trained_module
from trainer.config.compose import load_train_config
from trainer.config.errors import ConfigError
from trainer.model.audio_adapter import audio_adapter_state_dict
from trainer.model.lora import lora_state_dict
from trainer.stage_model import build_stage_model
from trainer.train import run


def next_stage(stage2, *extra):
    """The config of a stage that starts from the stage-2 run (a joint adapter + LoRA stage) of the fixture."""
    result, _, _, overrides = stage2
    base = [o for o in overrides if not o.startswith(("stage=", "stage.adapter_init="))]
    return load_train_config([*base, "stage=anyexpress_stage2", f"stage.adapter_init={result.last_checkpoint}", *extra])


def test_stage_two_restores_the_dit_and_keeps_the_adapter(stage2):
    result, _, _, overrides = stage2
    _, trained = trained_module(overrides, result.last_checkpoint)
    model, _ = build_stage_model(next_stage(stage2))
    got, want = audio_adapter_state_dict(model.dit.transformer), audio_adapter_state_dict(trained.dit.transformer)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    lora = lora_state_dict(model.dit.transformer)
    assert lora and all(not v.any() for k, v in lora.items() if ".lora_B." in k)  # the pretrained DiT again
    assert any(v.any() for k, v in lora_state_dict(trained.dit.transformer).items() if ".lora_B." in k)


@pytest.mark.parametrize("source", ["checkpoint", "export"])
def test_continuing_the_lora_reproduces_the_previous_stage(stage2, source):
    result, export_dir, _, overrides = stage2
    cfg, trained = trained_module(overrides, result.last_checkpoint)
    init = result.last_checkpoint if source == "checkpoint" else export_dir
    # Another alpha than the previous stage's (8): its scale is divided out, so the function stays the same.
    nxt = next_stage(stage2, "stage.restore_lora=false", "stage.lora.alpha=4")
    nxt = dataclasses.replace(nxt, stage=dataclasses.replace(nxt.stage, adapter_init=str(init)))
    model, _ = build_stage_model(nxt)
    inputs = fixed_inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(model.dit.eval()(*inputs), trained.dit(*inputs), rtol=1e-5, atol=1e-6)


def test_stage_one_trains_a_new_adapter_and_the_lora_together(simple_shards, tmp_path):
    overrides = tiny_overrides(simple_shards, tmp_path / "run", 2, "stage=anyexpress_stage1", "stage.lora.rank=4")
    _, trained = trained_module(overrides, run(overrides).last_checkpoint)
    adapter = audio_adapter_state_dict(trained.dit.transformer)
    assert any(v.any() for k, v in adapter.items() if "to_out" in k)  # the adapter's output starts at zero
    assert any(v.any() for k, v in lora_state_dict(trained.dit.transformer).items() if ".lora_B." in k)


def test_schedule_settings_that_cannot_work_are_refused(stage1, simple_shards, tmp_path):
    _, stage1_export, _ = stage1
    common = tiny_overrides(simple_shards, tmp_path, 1)
    with pytest.raises(ConfigError, match="stage.fresh_adapter=true to train a new adapter"):
        load_train_config([*common, "stage=anyexpress_stage2"])
    with pytest.raises(ConfigError, match="'stage.fresh_adapter' = True: contradicts stage.adapter_init"):
        load_train_config([*common, "stage=anyexpress_stage1", f"stage.adapter_init={stage1_export}"])
    with pytest.raises(ConfigError, match="'stage.restore_lora' = False"):
        load_train_config([*common, "stage=stage1_audio", "stage.restore_lora=false"])
    # A stage-1 export holds an adapter and no LoRA: there is nothing to continue.
    cfg = load_train_config(
        [
            *common,
            "stage=anyexpress_stage2",
            f"stage.adapter_init={stage1_export}",
            "stage.restore_lora=false",
            "stage.lora.rank=4",
        ]
    )
    with pytest.raises(ValueError, match="stage.restore_lora=false continues a LoRA, but .* holds none"):
        build_stage_model(cfg)
