"""The audio-conditioned DiT: a diffusers LTX transformer plus the audio adapter, called by name."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainer.config.schema import AudioConfig, LTXTransformerArch, ModelConfig
from trainer.model.audio_adapter import (
    AudioAdapterConfig,
    AudioConditioning,
    AudioState,
    attach_audio_adapter,
)
from trainer.model.backbone import load_transformer
from trainer.model.masks import latent_frame_groups

# diffusers' LTX pipelines feed timesteps on the scheduler's 0…1000 scale.
TIMESTEP_SCALE = 1000.0


def adapter_config(audio: AudioConfig, arch: LTXTransformerArch, temporal_compression: int = 8) -> AudioAdapterConfig:
    """Adapter shape for an audio config and a DiT architecture."""
    return AudioAdapterConfig(
        window=audio.window,
        feature_layers=audio.feature_layers,
        feature_dim=audio.feature_dim,
        feature_rate=audio.feature_rate,
        adapter_dim=audio.adapter_dim,
        inner_dim=arch.num_attention_heads * arch.attention_head_dim,
        num_heads=arch.num_attention_heads,
        head_dim=arch.attention_head_dim,
        num_layers=arch.num_layers,
        temporal_compression=temporal_compression,
    )


@dataclass
class AudioInputs:
    """Audio inputs of one forward pass.

    Attributes:
        windows: Eq. 3 windows ``[B, F, W, Bl, C]`` (zeros where the audio condition is dropped).
        window_valid: ``[B, F, W]`` bool, false for padded slots.
        token_frame_index: Latent frame whose audio each DiT token reads ``[B, N]`` (−1: none, e.g.
            reference tokens).
        gate: Eq. 6 mask ``M`` per token ``[B, N]``.
    """

    windows: torch.Tensor
    window_valid: torch.Tensor
    token_frame_index: torch.Tensor
    gate: torch.Tensor


class TalkingHeadDiT(nn.Module):
    """LTX-Video DiT with the EditYourself audio adapter.

    Args:
        transformer: A diffusers ``LTXVideoTransformer3DModel``.
        adapter: Adapter shape; ``None`` for the plain DiT.
    """

    def __init__(self, transformer: nn.Module, adapter: AudioAdapterConfig | None):
        super().__init__()
        self.transformer = transformer
        self.adapter_config = adapter
        self.audio_state = AudioState()
        if adapter is not None:
            attach_audio_adapter(transformer, adapter, self.audio_state)

    @classmethod
    def from_config(cls, model: ModelConfig, audio: AudioConfig, with_adapter: bool = True) -> TalkingHeadDiT:
        """Load the backbone as configured and attach a freshly initialised adapter (unless ``with_adapter=False``)."""
        transformer = load_transformer(model.transformer)
        adapter = None
        if with_adapter:
            adapter = adapter_config(audio, model.transformer.arch, model.vae.temporal_compression)
        dit = cls(transformer, adapter)
        if model.gradient_checkpointing:
            dit.transformer.enable_gradient_checkpointing()
        return dit

    def audio_conditioning(self, audio: AudioInputs) -> AudioConditioning:
        """Project audio windows to tokens and build the frame-locality attention mask.

        Returns:
            Tokens ``[B, T·W, D]``, mask ``[B, 1, N, T·W]`` and gate ``[B, N]``.
        """
        proj = self.transformer.audio_projection
        tokens = proj(audio.windows)  # [B, T, W, D]
        bsz, frames, window, _ = tokens.shape
        groups = latent_frame_groups(audio.windows.shape[1], proj.temporal_compression)
        key_valid = torch.stack([audio.window_valid[:, g.start : g.stop].any(dim=1) for g in groups], dim=1)
        key_frame = torch.arange(frames, device=tokens.device).repeat_interleave(window)
        mask = (audio.token_frame_index[:, :, None] == key_frame[None, None, :]) & key_valid.reshape(bsz, 1, -1)
        # A query with no readable key (a reference token, or audio shorter than the clip) reads every
        # key instead of none, which would give NaN; reference tokens are gated to zero anyway.
        mask = mask | ~mask.any(dim=-1, keepdim=True)
        return AudioConditioning(tokens=tokens.flatten(1, 2), attn_mask=mask[:, None], gate=audio.gate)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        video_coords: torch.Tensor,
        audio: AudioInputs | None = None,
    ) -> torch.Tensor:
        """Predict the flow-matching velocity of every token.

        Args:
            hidden_states: DiT input tokens ``[B, N, C_latent]`` (references then video).
            timestep: Per-token flow time ``t ∈ [0, 1]`` ``[B, N]`` (0 for clean tokens).
            encoder_hidden_states: Text embeddings ``[B, L, caption_channels]``.
            encoder_attention_mask: ``[B, L]`` (1 = real token).
            video_coords: RoPE coordinates ``[B, 3, N]`` (:mod:`trainer.model.sequence`).
            audio: Audio inputs; ``None`` runs the DiT without the adapter's contribution.

        Returns:
            Velocity ``[B, N, C_latent]``.
        """
        if audio is not None and self.adapter_config is None:
            raise ValueError("audio inputs given to a DiT without an audio adapter")
        self.audio_state.current = self.audio_conditioning(audio) if audio is not None else None
        try:
            out = self.transformer(
                hidden_states=hidden_states,
                encoder_hidden_states=encoder_hidden_states,
                timestep=timestep * TIMESTEP_SCALE,
                encoder_attention_mask=encoder_attention_mask,
                video_coords=video_coords,
                return_dict=False,
            )[0]
        finally:
            # Checkpointed blocks re-run during backward and must find the same audio inputs.
            if not (torch.is_grad_enabled() and getattr(self.transformer, "gradient_checkpointing", False)):
                self.audio_state.current = None
        return out
