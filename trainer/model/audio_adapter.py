"""The audio adapter of EditYourself §3.2, attached to a diffusers LTX DiT the way diffusers adds IP-Adapter.

Pieces:

* :class:`AudioProjection` — shared by all blocks: adds the learned window position tensor ``P``
  (Eq. 4), projects the stacked Whisper layers, and pools the video-rate windows to the latent frame
  rate with a strided convolution initialised as average pooling.
* :class:`AudioCrossAttention` — one per DiT block, registered as ``transformer_blocks.{i}.audio_attn``,
  with its own query/key/value projections and a zero-initialised output projection.
* :class:`AudioAttnProcessor` — replaces each block's ``attn2`` processor: it runs the stock text
  cross-attention processor unchanged, then adds ``M ⊙ AudioAttn(z, c_a)`` (Eq. 6) where ``z`` is the
  hidden state after text cross-attention, so the audio layer sits between text cross-attention and
  the FFN without copying any diffusers block code.

The per-forward audio inputs reach the processors by name through an :class:`AudioState` that
:class:`trainer.model.dit.TalkingHeadDiT` fills before calling the transformer.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.model.weights import state_mismatch

ADAPTER_KEY_PATTERN = re.compile(r"^(audio_projection\.|transformer_blocks\.\d+\.audio_attn\.)")


@dataclass
class AudioAdapterConfig:
    """Everything needed to rebuild the adapter (saved next to exported weights as JSON).

    Attributes:
        window: Window slots ``W`` per video frame (Eq. 3).
        feature_layers: Stacked encoder outputs ``B`` (Whisper-small: 13).
        feature_dim: Feature channels ``C`` (Whisper-small: 768).
        feature_rate: Audio feature rate in Hz (Whisper: 50).
        adapter_dim: Width of the audio tokens (keys/values of the audio cross-attention).
        inner_dim: Hidden width of the DiT (queries and output).
        num_heads: Attention heads of the audio cross-attention (the DiT's head count).
        head_dim: Channels per head.
        num_layers: DiT blocks, one audio cross-attention each.
        temporal_compression: Video frames per latent frame after frame 0 (LTX VAE: 8).
    """

    window: int
    feature_layers: int
    feature_dim: int
    feature_rate: float
    adapter_dim: int
    inner_dim: int
    num_heads: int
    head_dim: int
    num_layers: int
    temporal_compression: int = 8

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)


class AudioProjection(nn.Module):
    """Turns per-frame audio windows into audio tokens at the latent frame rate.

    Args:
        cfg: Adapter configuration.
    """

    def __init__(self, cfg: AudioAdapterConfig):
        super().__init__()
        self.temporal_compression = cfg.temporal_compression
        # Eq. 4: one learned offset per window slot, layer and channel.
        self.pos_embed = nn.Parameter(torch.zeros(cfg.window, cfg.feature_layers, cfg.feature_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.in_proj = nn.Linear(cfg.feature_layers * cfg.feature_dim, cfg.adapter_dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.adapter_dim, cfg.adapter_dim),
            nn.GELU(),
            nn.Linear(cfg.adapter_dim, cfg.adapter_dim),
        )
        s = cfg.temporal_compression
        self.temporal_pool = nn.Conv1d(cfg.adapter_dim, cfg.adapter_dim, kernel_size=s, stride=s)
        self.norm = nn.LayerNorm(cfg.adapter_dim)
        self.reset_pooling()

    @torch.no_grad()
    def reset_pooling(self) -> None:
        """Initialise the temporal convolution as average pooling over each latent frame's frames."""
        s = self.temporal_compression
        self.temporal_pool.weight.zero_()
        idx = torch.arange(self.temporal_pool.out_channels)
        self.temporal_pool.weight[idx, idx, :] = 1.0 / s
        self.temporal_pool.bias.zero_()

    def pool_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Average-pool-initialised convolution from video frames to latent frames.

        Latent frame 0 of the causal LTX VAE is video frame 0 alone and latent frame ``n`` covers
        frames ``8(n−1)+1 … 8n``; repeating frame 0 seven times in front reproduces that grouping
        with one stride-8 window per latent frame.

        Args:
            x: ``[B, F, W, D]`` with ``F = 8k + 1``.

        Returns:
            ``[B, T, W, D]`` with ``T = k + 1``.
        """
        s = self.temporal_compression
        bsz, frames, window, dim = x.shape
        if frames % s != 1:
            raise ValueError(f"audio windows cover {frames} video frames; expected {s}k+1")
        x = torch.cat([x[:, :1].expand(-1, s - 1, -1, -1), x], dim=1)
        x = x.permute(0, 2, 3, 1).reshape(bsz * window, dim, -1)
        x = self.temporal_pool(x)
        return x.reshape(bsz, window, dim, -1).permute(0, 3, 1, 2)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Project windows to audio tokens.

        Args:
            windows: ``[B, F, W, Bl, C]`` from :func:`trainer.model.audio_windows.sample_audio_windows`
                (zeros for a dropped audio condition: the null condition).

        Returns:
            Audio tokens ``[B, T, W, adapter_dim]``, ``T = (F − 1) / 8 + 1``.
        """
        x = windows + self.pos_embed.to(windows.dtype)
        x = x.flatten(-2)
        x = self.mlp(F.gelu(self.in_proj(x)))
        return self.norm(self.pool_frames(x))


class AudioCrossAttention(nn.Module):
    """Cross-attention from video tokens to the audio tokens of their own latent frame.

    Query/key normalisation follows LTX's ``rms_norm_across_heads``. ``to_out`` starts at zero so that
    the adapted DiT computes exactly what the pretrained one does until training moves it.

    Args:
        cfg: Adapter configuration.
    """

    def __init__(self, cfg: AudioAdapterConfig):
        super().__init__()
        inner = cfg.num_heads * cfg.head_dim
        self.heads = cfg.num_heads
        self.to_q = nn.Linear(cfg.inner_dim, inner)
        self.to_k = nn.Linear(cfg.adapter_dim, inner)
        self.to_v = nn.Linear(cfg.adapter_dim, inner)
        self.norm_q = nn.RMSNorm(inner, eps=1e-5)
        self.norm_k = nn.RMSNorm(inner, eps=1e-5)
        self.to_out = nn.Linear(inner, cfg.inner_dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, hidden_states: torch.Tensor, audio_tokens: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """Attend.

        Args:
            hidden_states: Video (and reference) tokens ``[B, N, inner_dim]``.
            audio_tokens: ``[B, K, adapter_dim]`` (all latent frames' tokens, flattened).
            attn_mask: ``[B, 1, N, K]`` bool, true where a query may read a key (same latent frame).

        Returns:
            ``[B, N, inner_dim]``.
        """
        q = self.norm_q(self.to_q(hidden_states)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        k = self.norm_k(self.to_k(audio_tokens)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        v = self.to_v(audio_tokens).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=attn_mask)
        return self.to_out(out.transpose(1, 2).flatten(2))


@dataclass
class AudioConditioning:
    """Audio inputs of one forward pass, shared by every block's processor.

    Attributes:
        tokens: Audio tokens ``[B, K, adapter_dim]``.
        attn_mask: ``[B, 1, N, K]`` bool locality mask.
        gate: ``M`` of Eq. 6 per token ``[B, N]`` (0 for reference tokens).
    """

    tokens: torch.Tensor
    attn_mask: torch.Tensor
    gate: torch.Tensor


class AudioState:
    """Holder through which the processors receive the current :class:`AudioConditioning`.

    The conditioning stays set after a forward pass while gradient checkpointing may still recompute
    the blocks during backward; the next forward replaces it.
    """

    def __init__(self) -> None:
        self.current: AudioConditioning | None = None


class AudioAttnProcessor:
    """``attn2`` processor: stock text cross-attention, then gated audio cross-attention (Eq. 6).

    The block adds this processor's return value to its hidden state ``h``; returning
    ``text + M ⊙ AudioAttn(h + text)`` therefore yields ``z_out = z_in + M ⊙ AudioAttn(z_in)`` with
    ``z_in = h + text``, the hidden state right after text cross-attention.

    Args:
        base: The processor ``attn2`` had (diffusers' ``LTXVideoAttnProcessor``).
        audio_attn: The block's :class:`AudioCrossAttention` (owned by the block, not by this object).
        state: Shared per-forward audio inputs.
    """

    def __init__(self, base, audio_attn: AudioCrossAttention, state: AudioState):
        self.base = base
        self.audio_attn = audio_attn
        self.state = state

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run text cross-attention and, when audio is set, add the gated audio attention."""
        text = self.base(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        cond = self.state.current
        if cond is None:
            return text
        audio = self.audio_attn(hidden_states + text, cond.tokens, cond.attn_mask)
        return text + cond.gate.unsqueeze(-1).to(audio.dtype) * audio


def attach_audio_adapter(transformer: nn.Module, cfg: AudioAdapterConfig, state: AudioState) -> None:
    """Add the audio projection and one audio cross-attention per block to a diffusers LTX DiT.

    Args:
        transformer: ``LTXVideoTransformer3DModel``; modified in place (new submodules
            ``audio_projection`` and ``transformer_blocks.{i}.audio_attn``; ``attn2`` processors replaced).
        cfg: Adapter configuration; ``num_layers``, ``inner_dim`` and heads must match the DiT.
        state: Shared holder the processors read.

    Raises:
        ValueError: The adapter does not fit the DiT, or one is attached already.
    """
    blocks = transformer.transformer_blocks
    if hasattr(transformer, "audio_projection"):
        raise ValueError("this transformer already carries an audio adapter")
    inner = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    if len(blocks) != cfg.num_layers or inner != cfg.inner_dim:
        raise ValueError(
            f"audio adapter built for {cfg.num_layers} blocks of width {cfg.inner_dim}, "
            f"but the DiT has {len(blocks)} blocks of width {inner}"
        )
    transformer.audio_projection = AudioProjection(cfg)
    for block in blocks:
        block.audio_attn = AudioCrossAttention(cfg)
        block.attn2.set_processor(AudioAttnProcessor(block.attn2.processor, block.audio_attn, state))


def adapter_parameter_names(module: nn.Module) -> list[str]:
    """Names of the adapter's parameters in ``module.named_parameters()`` (peft-wrapped names included)."""
    return [n for n, _ in module.named_parameters() if ADAPTER_KEY_PATTERN.search(_strip_prefixes(n))]


def _strip_prefixes(name: str) -> str:
    return name.removeprefix("base_model.model.")


def audio_adapter_state_dict(transformer: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors, keyed relative to the transformer.

    Keys: ``audio_projection.…`` and ``transformer_blocks.{i}.audio_attn.…``.
    """
    return {k: v.detach() for k, v in transformer.state_dict().items() if ADAPTER_KEY_PATTERN.search(k)}


def load_audio_adapter_state_dict(transformer: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load adapter weights, refusing anything that does not match key for key and shape for shape.

    Args:
        transformer: DiT with an attached adapter.
        state: Adapter tensors (keys as :func:`audio_adapter_state_dict` writes them).
        source: File the weights came from, for error messages.

    Raises:
        ValueError: Missing, unexpected or differently shaped keys (the first of each is named).
    """
    problem = state_mismatch(audio_adapter_state_dict(transformer), state)
    if problem:
        raise ValueError(f"audio adapter in {source} does not match this model: {problem}")
    own = dict(transformer.named_parameters())
    own.update(dict(transformer.named_buffers()))
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))
