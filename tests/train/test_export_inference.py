"""The inference model assembled from a base folder and export files computes what the training checkpoint does."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.train.test_export import fixed_inputs, trained_module
from trainer.model.exported import WeightsMismatchError, read_exported_weights
from trainer.model.talking_head import TalkingHeadModel


@pytest.mark.parametrize("lora", ["diffusers", "peft"])
def test_model_from_exports_gives_the_checkpoints_velocity(stage2, smoke_base, lora):
    result, export_dir, _, overrides = stage2
    cfg, module = trained_module(overrides, result.last_checkpoint)
    model = TalkingHeadModel.from_exports(smoke_base, export_dir, lora=lora)
    assert model.lora_modules, "the stage-2 LoRA was not attached"
    inputs = fixed_inputs(cfg, seed=3)
    with torch.no_grad():
        want = module.dit(*inputs)
        got = model.dit(*inputs)
        no_lora = TalkingHeadModel.from_exports(smoke_base, export_dir, lora="none").dit(*inputs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(no_lora, want, atol=1e-4), "the LoRA does not change the velocity: a vacuous parity"
    # The frozen parts are the run's: same latents of the same pixels, same caption embeddings.
    frames = torch.rand(1, 3, 9, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(
            model.vae.encode(frames).latent_dist.mean, module.vae.encode(frames).latent_dist.mean
        )
        got_text, got_mask = model.text_encoder(["a person talking"])
        want_text, want_mask = module.text_encoder(["a person talking"])
    assert torch.equal(got_mask, want_mask)
    torch.testing.assert_close(got_text, want_text)


def test_stage1_export_loads_without_lora(stage1, smoke_base):
    _, export_dir, _ = stage1
    model = TalkingHeadModel.from_exports(smoke_base, export_dir)
    assert model.lora_modules == [] and model.adapter_config is not None


def test_export_json_records_the_features_and_training_settings(stage2):
    _, export_dir, _, overrides = stage2
    meta = read_exported_weights(export_dir).meta
    assert meta["audio"]["encoder"]["random_init"] is True and meta["audio"]["feature_layers"] == 5
    assert meta["training"]["num_reference_frames"] == 2 and meta["training"]["mask"] == "enclosing"


def test_adapter_of_another_dit_is_refused_naming_the_fields(stage2, other_dit_base):
    _, export_dir, _, _ = stage2
    with pytest.raises(WeightsMismatchError, match=r"num_layers: adapter 2 vs base 3"):
        TalkingHeadModel.from_exports(other_dit_base, export_dir)


def test_lora_on_modules_the_base_lacks_is_refused_naming_the_keys(stage2, smoke_base, tmp_path):
    _, export_dir, _, _ = stage2
    bad = tmp_path / "export"
    bad.mkdir()
    for name in ("audio_adapter.safetensors", "audio_adapter.json"):
        (bad / name).write_bytes((export_dir / name).read_bytes())
    lora = load_file(export_dir / "pytorch_lora_weights.safetensors")
    for part in ("lora_A", "lora_B"):  # a block the 2-block base does not have
        key = f"transformer.transformer_blocks.0.attn1.to_q.{part}.weight"
        lora[key.replace("blocks.0.", "blocks.7.")] = lora[key].clone()
    save_file(lora, str(bad / "pytorch_lora_weights.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"modules the base does not have \(transformer_blocks\.7\.attn"):
        TalkingHeadModel.from_exports(smoke_base, bad)


def test_missing_export_files_are_named(smoke_base, tmp_path):
    with pytest.raises(FileNotFoundError, match="no audio_adapter.safetensors .*trainer.export"):
        TalkingHeadModel.from_exports(smoke_base, tmp_path)
    with pytest.raises(FileNotFoundError, match="base=.*nowhere: no such folder; expected a diffusers folder"):
        TalkingHeadModel.from_exports(tmp_path / "nowhere", tmp_path)
