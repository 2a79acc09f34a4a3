"""The base stage (every DiT weight, no adapter, no LoRA) and its export as an LTX-layout diffusers folder."""

import json

import pytest
import torch
from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

from tests.train.conftest import tiny_overrides
from trainer.checkpoints import MODULE_PREFIX, read_training_checkpoint
from trainer.config.compose import load_train_config
from trainer.config.errors import ConfigError
from trainer.export import export_checkpoint
from trainer.lightning_module import TalkingHeadModule
from trainer.model.backbone import load_transformer
from trainer.model.text_encoder import TextEncoder
from trainer.model.vae import load_vae
from trainer.train import run


@pytest.fixture(scope="module")
def base_run(simple_shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    result = run(tiny_overrides(simple_shards, root / "run", 3, "stage=base", "optim.lr_adam=1e-3"))
    return result, root


def test_base_stage_trains_every_dit_weight_and_nothing_else(base_run, simple_shards):
    result, _ = base_run
    cfg = load_train_config(tiny_overrides(simple_shards, "unused", 3, "stage=base"))
    module = TalkingHeadModule(cfg)
    assert module.dit.adapter_config is None  # the plain DiT: no audio cross-attention at all
    assert not any("audio" in n or "lora" in n for n, _ in module.named_parameters())
    dit = {MODULE_PREFIX + n for n, _ in module.dit.transformer.named_parameters()}
    assert set(module.trainable_state_names()) == dit
    ckpt = read_training_checkpoint(result.last_checkpoint)
    assert set(ckpt["state_dict"]) == dit  # the checkpoint holds the whole DiT and no frozen part
    # Three steps moved every DiT weight away from its random initialisation (no frozen leftovers).
    init = {MODULE_PREFIX + k: v for k, v in load_transformer(cfg.model.transformer).state_dict().items()}
    unchanged = [k for k, v in ckpt["state_dict"].items() if torch.equal(v, init[k])]
    assert unchanged == []


def test_base_stage_rules():
    base = ["experiment=smoke", "data.shards=unused", "stage=base"]
    with pytest.raises(ConfigError, match="stage.lora.enabled"):
        load_train_config([*base, "stage.lora.enabled=true"])
    with pytest.raises(ConfigError, match="stage.p_audio"):
        load_train_config([*base, "stage.p_audio=0.5"])
    with pytest.raises(ConfigError, match="stage.train_adapter"):
        load_train_config([*base, "stage.train_adapter=true"])
    # Full fine-tuning with an adapter attached is a valid mix; every DiT weight trains alongside it.
    cfg = load_train_config([*base, "stage.audio_adapter=true", "stage.p_audio=1.0"])
    module = TalkingHeadModule(cfg)
    names = set(module.trainable_state_names())
    assert any(".audio_attn." in n for n in names) and len(names) == len(list(module.dit.parameters()))


def test_base_export_is_an_ltx_layout_diffusers_folder(base_run):
    result, root = base_run
    files = export_checkpoint(result.last_checkpoint, root / "base_model")
    folder = root / "base_model"
    assert {p.name for p in folder.iterdir()} >= {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"}
    index = json.loads((folder / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "LTXVideoTransformer3DModel"]
    assert files["transformer"] == folder / "transformer"
    ckpt = read_training_checkpoint(result.last_checkpoint)
    trained = {k.removeprefix(MODULE_PREFIX): v for k, v in ckpt["state_dict"].items()}

    # diffusers' own loaders read it...
    dit = LTXVideoTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    assert all(torch.equal(v, trained[k]) for k, v in dit.state_dict().items())
    vae = AutoencoderKLLTXVideo.from_pretrained(folder, subfolder="vae")
    assert vae.spatial_compression_ratio == 32 and vae.temporal_compression_ratio == 8

    # ...and so does talkdit's loader, with the keys the 13B config uses (source=diffusers + path).
    cfg = load_train_config(
        ["experiment=smoke", "data.shards=unused", f"model.transformer.path={folder}"]
        + [f"model.{part}.source=diffusers" for part in ("transformer", "vae", "text_encoder")]
        + ["model.transformer.subfolder=transformer", f"model.vae.path={folder}", f"model.text_encoder.path={folder}"]
    )
    loaded = load_transformer(cfg.model.transformer)
    assert all(torch.equal(v, trained[k]) for k, v in loaded.state_dict().items())
    run_cfg = load_train_config(tiny_overrides("unused", "unused", 1, "stage=base"))
    same_vae = load_vae(run_cfg.model.vae)
    assert all(torch.equal(v, same_vae.state_dict()[k]) for k, v in load_vae(cfg.model.vae).state_dict().items())
    text = TextEncoder(cfg.model.text_encoder)
    reference = TextEncoder(run_cfg.model.text_encoder)
    emb, _ = text(["a person talking"])
    assert torch.equal(emb, reference(["a person talking"])[0])
