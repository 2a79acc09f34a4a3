"""Sequence parallelism for the LTX DiT, applied from outside the model.

Only the blocks' self-attention (``attn1``) mixes tokens across the sequence; everything else — AdaLN
with per-token timesteps, RoPE, text cross-attention, the audio cross-attention (each token reads the
audio of its own latent frame, replicated on every rank), FFN, output head — is per token. So the
tokens, their timesteps, RoPE coordinates and masks are split along the sequence into equal shards (the
sequence is padded to a multiple of the group size), and :func:`sequence_parallel` swaps every ``attn1``
processor for one that gathers the sequence for its share of the heads with yunchang's
``SeqAllToAll4D`` (Ulysses) or runs yunchang's ``LongContextAttention`` (ring, hybrid), and scatters back.
Padded tokens are masked out as keys (Ulysses), so results do not depend on the padding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers.models.transformers.transformer_ltx import apply_rotary_emb

from trainer.model.dit import AudioInputs, TalkingHeadDiT
from trainer.parallel.mesh import ParallelMesh


class SequenceState:
    """Per-forward information the parallel processors need: how many of the gathered tokens are real."""

    def __init__(self) -> None:
        self.valid_tokens: int | None = None


def local_qkv(attn, hidden_states: torch.Tensor, image_rotary_emb=None) -> tuple[torch.Tensor, ...]:
    """This rank's queries, keys and values as LTX's own ``attn1`` computes them (QK RMSNorm, then RoPE).

    Args:
        attn: The block's diffusers ``Attention``.
        hidden_states: The local tokens ``[B, N/P, D]``.
        image_rotary_emb: RoPE ``(cos, sin)`` of those tokens, or ``None``.

    Returns:
        ``(q, k, v)``, each ``[B, N/P, D]`` (heads not yet split).
    """
    q = attn.norm_q(attn.to_q(hidden_states))
    k = attn.norm_k(attn.to_k(hidden_states))
    v = attn.to_v(hidden_states)
    if image_rotary_emb is not None:
        q = apply_rotary_emb(q, image_rotary_emb)
        k = apply_rotary_emb(k, image_rotary_emb)
    return q, k, v


class UlyssesAttnProcessor:
    """Ulysses ``attn1`` processor.

    q/k/v are computed for the local tokens, exchanged all-to-all into the full sequence for 1/size of the
    heads, attended with padded keys masked, and exchanged back.

    Args:
        mesh: This rank's mesh.
        state: Shared per-forward state (valid token count).
    """

    def __init__(self, mesh: ParallelMesh, state: SequenceState):
        self.mesh = mesh
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        """Self-attention over the whole (sharded) sequence."""
        from yunchang.comm.all_to_all import SeqAllToAll4D

        q, k, v = local_qkv(attn, hidden_states, image_rotary_emb)  # [B, N/P, D] each
        q, k, v = (x.unflatten(2, (attn.heads, -1)) for x in (q, k, v))  # [B, N/P, H, d]
        group = self.mesh.sp_group
        q, k, v = (SeqAllToAll4D.apply(group, x, 2, 1, False) for x in (q, k, v))  # [B, N, H/P, d]
        n = q.shape[1]
        mask = None
        if self.state.valid_tokens is not None and self.state.valid_tokens < n:
            mask = (torch.arange(n, device=q.device) < self.state.valid_tokens)[None, None, None, :]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        out = SeqAllToAll4D.apply(group, out.transpose(1, 2).contiguous(), 1, 2, False)  # [B, N/P, H, d]
        out = out.flatten(2, 3).to(q.dtype)
        return attn.to_out[1](attn.to_out[0](out))


class LongContextAttnProcessor:
    """``attn1`` processor running yunchang's ``LongContextAttention`` (ring or hybrid Ulysses + ring; CUDA).

    The sequence must need no padding (yunchang's ring kernels take no key mask).
    """

    def __init__(self, mesh: ParallelMesh, state: SequenceState, ulysses_degree: int):
        import yunchang
        from yunchang.kernels import AttnType

        yunchang.set_seq_parallel_pg(ulysses_degree, mesh.sp_size // ulysses_degree, dist.get_rank(), mesh.world)
        self.attention = yunchang.LongContextAttention(ring_impl_type="basic", attn_type=AttnType.TORCH_FLASH)
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        """Self-attention over the whole (sharded) sequence."""
        q, k, v = local_qkv(attn, hidden_states, image_rotary_emb)  # [B, N/P, D] each
        dtype = q.dtype
        # Flash kernels take only half precision; fp32 activations (RMSNorm, RoPE) are cast for the call.
        kernel_dtype = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        q, k, v = (x.unflatten(2, (attn.heads, -1)).to(kernel_dtype) for x in (q, k, v))
        out = self.attention(q, k, v).flatten(2, 3).to(dtype)
        return attn.to_out[1](attn.to_out[0](out))


@dataclass
class SequenceParallel:
    """A DiT whose self-attention runs across a sequence group, and how to shard its inputs."""

    mesh: ParallelMesh
    state: SequenceState
    mode: str

    def padded_length(self, n: int) -> int:
        """Sequence length rounded up to a multiple of the group size."""
        p = self.mesh.sp_size
        return (n + p - 1) // p * p

    def shard(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's equal slice of ``x`` along the sequence dimension (padded with zeros)."""
        n = x.shape[dim]
        total = self.padded_length(n)
        if total != n:
            if self.mode != "ulysses":
                raise ValueError(
                    f"{n} tokens do not split into {self.mesh.sp_size} equal shards; ring attention takes no "
                    "padding mask — choose token counts divisible by parallel.size or use parallel=ulysses"
                )
            pad = [0, 0] * (x.dim() - dim - 1) + [0, total - n]
            x = F.pad(x, pad)
        per = total // self.mesh.sp_size
        return x.narrow(dim, self.mesh.sp_rank * per, per)

    def shard_audio(self, audio: AudioInputs | None) -> AudioInputs | None:
        """Audio inputs with the per-token fields sharded (the windows stay whole: every rank needs them)."""
        if audio is None:
            return None
        frame_index = self.shard(audio.token_frame_index + 1) - 1  # padding reads no audio (index −1)
        return replace(audio, token_frame_index=frame_index, gate=self.shard(audio.gate))

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over the sequence group."""
        dist.all_reduce(x, group=self.mesh.sp_group)
        return x


def sequence_parallel(dit: TalkingHeadDiT, mesh: ParallelMesh, mode: str, ulysses_degree: int = 1) -> SequenceParallel:
    """Swap every block's self-attention processor for a sequence-parallel one.

    Args:
        dit: The audio-conditioned DiT (modified in place; its weights are untouched).
        mesh: This rank's mesh (``mesh.sp_size > 1``).
        mode: ``ulysses``, ``ring`` or ``hybrid``.
        ulysses_degree: Hybrid only: Ulysses ranks per ring step.

    Returns:
        The handle the training step shards its inputs with.
    """
    state = SequenceState()
    if mode == "ulysses":
        proc = UlyssesAttnProcessor(mesh, state)
    elif mode == "ring":
        proc = LongContextAttnProcessor(mesh, state, 1)
    elif mode == "hybrid":
        proc = LongContextAttnProcessor(mesh, state, ulysses_degree)
    else:
        raise ValueError(f"parallel.mode={mode!r}: expected ulysses, ring or hybrid")
    for block in dit.transformer.transformer_blocks:
        block.attn1.set_processor(proc)
    return SequenceParallel(mesh, state, mode)
