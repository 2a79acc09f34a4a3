"""Export round trip: peft LoRA, diffusers LoRA and the adapter file reproduce the trained model."""

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from trainer.checkpoints import read_training_checkpoint
from trainer.config.compose import load_train_config
from trainer.export import export_checkpoint, main
from trainer.lightning_module import TalkingHeadModule
from trainer.model.audio_adapter import AudioAdapterConfig, audio_adapter_state_dict, load_audio_adapter_state_dict
from trainer.model.backbone import load_transformer
from trainer.model.dit import AudioInputs, TalkingHeadDiT
from trainer.model.sequence import video_coords, video_token_grid


def fixed_inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    arch = cfg.model.transformer.arch
    t_lat, h, w = 3, 2, 2
    n = t_lat * h * w
    x = torch.randn(2, n, arch.in_channels, generator=g)
    t = torch.rand(2, n, generator=g)
    text = torch.randn(2, 5, arch.caption_channels, generator=g)
    fps = torch.tensor([25.0, 30.0])
    windows = torch.randn(2, 17, cfg.audio.window, cfg.audio.feature_layers, cfg.audio.feature_dim, generator=g)
    audio = AudioInputs(
        windows=windows,
        window_valid=torch.ones(2, 17, cfg.audio.window, dtype=torch.bool),
        token_frame_index=video_token_grid(2, t_lat, h, w, torch.device("cpu"))[0],
        gate=torch.ones(2, n),
    )
    return x, t, text, torch.ones(2, 5), video_coords(2, t_lat, h, w, fps, torch.device("cpu")), audio


def trained_module(overrides, ckpt_path):
    cfg = load_train_config(overrides)
    module = TalkingHeadModule(cfg)
    ckpt = read_training_checkpoint(ckpt_path)
    module.load_state_dict(ckpt["state_dict"], strict=False)
    return cfg, module.eval()


def fresh_dit_with_adapter(cfg, export_dir):
    meta = json.loads((export_dir / "audio_adapter.json").read_text())
    dit = TalkingHeadDiT(load_transformer(cfg.model.transformer), AudioAdapterConfig(**meta["adapter"]))
    load_audio_adapter_state_dict(dit.transformer, load_file(export_dir / "audio_adapter.safetensors"), "export")
    return dit.eval()


def test_export_writes_every_file(stage2):
    _, export_dir, files, _ = stage2
    for name in ("audio_adapter", "audio_adapter_config", "lora_peft", "lora_config", "lora_diffusers"):
        assert files[name].is_file(), name
    keys = load_file(files["lora_diffusers"]).keys()
    assert keys and all(k.startswith("transformer.") and ".lora_" in k for k in keys)
    peft_keys = load_file(files["lora_peft"]).keys()
    assert all(k.startswith("base_model.model.transformer_blocks.") for k in peft_keys)
    assert not any("audio" in k for k in peft_keys)


def test_adapter_file_rebuilds_the_adapter_exactly(stage2):
    result, export_dir, _, overrides = stage2
    cfg, module = trained_module(overrides, result.last_checkpoint)
    dit = fresh_dit_with_adapter(cfg, export_dir)
    trained = audio_adapter_state_dict(module.dit.transformer)
    rebuilt = audio_adapter_state_dict(dit.transformer)
    assert trained.keys() == rebuilt.keys()
    for k in trained:
        assert torch.equal(trained[k], rebuilt[k]), k
    # Training moved it away from the stage-1 adapter it started from.
    assert any(not torch.equal(v, load_file(stage_1_file(stage2))[k]) for k, v in trained.items())


def stage_1_file(stage2):
    _, _, _, overrides = stage2
    init = next(o.split("=", 1)[1] for o in overrides if o.startswith("stage.adapter_init="))
    return f"{init}/audio_adapter.safetensors"


def test_peft_lora_reloaded_with_peft_reproduces_the_trained_model(stage2):
    result, export_dir, _, overrides = stage2
    cfg, module = trained_module(overrides, result.last_checkpoint)
    inputs = fixed_inputs(cfg)
    with torch.no_grad():
        want = module.dit(*inputs)
        dit = fresh_dit_with_adapter(cfg, export_dir)
        base_out = dit(*inputs)
        PeftModel.from_pretrained(dit.transformer, str(export_dir / "lora"))
        got = dit(*inputs)
    assert not torch.allclose(base_out, want)  # the LoRA matters
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_diffusers_lora_file_loaded_into_a_fresh_model_reproduces_the_trained_model(stage2):
    result, export_dir, _, overrides = stage2
    cfg, module = trained_module(overrides, result.last_checkpoint)
    inputs = fixed_inputs(cfg, seed=1)
    with torch.no_grad():
        want = module.dit(*inputs)
        dit = fresh_dit_with_adapter(cfg, export_dir)
        dit.transformer.load_lora_adapter(str(export_dir / "pytorch_lora_weights.safetensors"), prefix="transformer")
        got = dit(*inputs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_stage1_export_has_no_lora(stage1):
    _, export_dir, files = stage1
    assert set(files) == {"audio_adapter", "audio_adapter_config"}
    assert not (export_dir / "lora").exists()


def test_export_refuses_to_overwrite_and_cli_reports_errors(stage1, tmp_path, capsys):
    result, export_dir, _ = stage1
    with pytest.raises(FileExistsError, match="overwrite=true"):
        export_checkpoint(result.last_checkpoint, export_dir)
    assert main([f"checkpoint={tmp_path}/missing.ckpt", f"output_dir={tmp_path}/out"]) == 2
    assert "missing.ckpt does not exist" in capsys.readouterr().err
    assert main([f"checkpoint={result.last_checkpoint}"]) == 2
    assert "output_dir" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage")
    assert main([f"checkpoint={bad}", f"output_dir={tmp_path}/out2"]) == 2
    assert "bad.ckpt is not a readable training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2*"))
    assert main([f"checkpoint={result.last_checkpoint}", f"output_dir={tmp_path}/ok", "overwrite=true"]) == 0
