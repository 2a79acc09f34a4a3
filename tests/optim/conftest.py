"""Fixtures for trainer.optim tests: the tiny LTX DiT with stand-ins for the audio adapter and LoRA.

The stand-in modules use the names and module types the real adapter uses (trainer/model), which is all
routing looks at.
"""

import pytest
import torch
from diffusers import LTXVideoTransformer3DModel
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

HIDDEN = 32  # num_attention_heads × attention_head_dim
WINDOW, WHISPER_BLOCKS, WHISPER_CHANNELS = 5, 3, 8
NUM_LAYERS = 2
LORA_TARGETS = r".*\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)|.*\.ff\.net\.(0\.proj|2)"


class AudioProjection(nn.Module):
    def __init__(self, dim: int = HIDDEN) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(WINDOW, WHISPER_BLOCKS, WHISPER_CHANNELS) * 0.02)
        self.in_proj = nn.Linear(WHISPER_BLOCKS * WHISPER_CHANNELS, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.temporal_pool = nn.Conv1d(dim, dim, 8, stride=8)
        self.norm = nn.LayerNorm(dim)


class AudioAttention(nn.Module):
    def __init__(self, dim: int = HIDDEN) -> None:
        super().__init__()
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)
        self.norm_q = nn.RMSNorm(dim)
        self.norm_k = nn.RMSNorm(dim)


def tiny_ltx() -> LTXVideoTransformer3DModel:
    torch.manual_seed(0)
    return LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        num_layers=NUM_LAYERS,
        caption_channels=16,
    )


def adapter_modules(model: nn.Module) -> list[nn.Module]:
    return [model.audio_projection, *(blk.audio_attn for blk in model.transformer_blocks)]


def with_adapter(model: nn.Module) -> nn.Module:
    model.audio_projection = AudioProjection()
    for block in model.transformer_blocks:
        block.audio_attn = AudioAttention()
    return model


def stage1(model: nn.Module) -> nn.Module:
    """Base frozen, adapter trainable."""
    model.requires_grad_(False)
    for module in adapter_modules(model):
        module.requires_grad_(True)
    return model


def stage2(model: nn.Module, rank: int = 4) -> nn.Module:
    """Base frozen, LoRA on attn1/attn2/ff linears and the adapter trainable."""
    model = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS), model)
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name)
    for module in adapter_modules(model):
        module.requires_grad_(True)
    return model


@pytest.fixture
def ltx_full() -> nn.Module:
    """Tiny LTX DiT + adapter, everything trainable."""
    return with_adapter(tiny_ltx())


@pytest.fixture
def ltx_stage1() -> nn.Module:
    return stage1(with_adapter(tiny_ltx()))


@pytest.fixture
def ltx_stage2() -> nn.Module:
    return stage2(with_adapter(tiny_ltx()))


def adapter_muon_names() -> set[str]:
    names = {"audio_projection.mlp.0.weight", "audio_projection.mlp.2.weight"}
    for i in range(NUM_LAYERS):
        names |= {f"transformer_blocks.{i}.audio_attn.{p}.weight" for p in ("to_q", "to_k", "to_v", "to_out")}
    return names


def lora_names() -> set[str]:
    targets = [f"{a}.{m}" for a in ("attn1", "attn2") for m in ("to_q", "to_k", "to_v", "to_out.0")]
    targets += ["ff.net.0.proj", "ff.net.2"]
    return {
        f"transformer_blocks.{i}.{t}.lora_{ab}.default.weight"
        for i in range(NUM_LAYERS)
        for t in targets
        for ab in ("A", "B")
    }


@pytest.fixture
def expected_names():
    return {"adapter_muon": adapter_muon_names(), "lora": lora_names()}
