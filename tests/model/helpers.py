"""Tiny model builders shared by model tests."""

from __future__ import annotations

import torch
from diffusers import LTXVideoTransformer3DModel

from trainer.config.schema import LTXTransformerArch
from trainer.model.audio_adapter import AudioAdapterConfig

TINY_ARCH = LTXTransformerArch(
    in_channels=8,
    out_channels=8,
    num_attention_heads=2,
    attention_head_dim=16,
    cross_attention_dim=32,
    num_layers=2,
    caption_channels=16,
)


def tiny_transformer(seed: int = 0) -> LTXVideoTransformer3DModel:
    torch.manual_seed(seed)
    from dataclasses import asdict

    return LTXVideoTransformer3DModel(**asdict(TINY_ARCH)).eval()


def tiny_adapter_config(window: int = 5, layers: int = 3, dim: int = 8) -> AudioAdapterConfig:
    return AudioAdapterConfig(
        window=window,
        feature_layers=layers,
        feature_dim=dim,
        feature_rate=50.0,
        adapter_dim=24,
        inner_dim=TINY_ARCH.inner_dim,
        num_heads=TINY_ARCH.num_attention_heads,
        head_dim=TINY_ARCH.attention_head_dim,
        num_layers=TINY_ARCH.num_layers,
    )
