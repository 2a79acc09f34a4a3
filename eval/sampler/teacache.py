"""TeaCache for the LTX DiT: reuse the transformer blocks' residual while the modulated input barely moves.

TeaCache (Liu et al., "Timestep Embedding Tells: It's Time to Cache for Video Diffusion Model") skips the DiT's
transformer blocks at a denoising step when the timestep-modulated input of the first block has changed little
since the last step that ran them: the blocks' output is then the step's input plus the residual (output −
input) that last step computed. The change is the relative L1 distance of the modulated inputs, rescaled by a
polynomial fitted per model (:data:`LTX_COEFFICIENTS`, TeaCache4LTX-Video's) and accumulated over skipped steps;
once the sum reaches ``threshold`` the blocks run again and the sum restarts.

EditYourself §4.3 uses it during the middle steps of TAPSF, where blocks do not shift (a cached residual belongs
to the same frames at a nearby noise level, not to a shifted window); the sampler therefore caches only on
non-shifting steps (:func:`eval.sampler.tapsf.shifting_steps`), keeping one cache per block window and per
guidance pass (audio on/off, text on/off), each of which sees other inputs.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# TeaCache4LTX-Video's rescaling polynomial (highest power first) of the relative L1 change.
LTX_COEFFICIENTS = (2.14700694e01, -1.28016453e01, 2.31279151e00, 7.92487521e-01, 9.69274326e-03)


@dataclass
class _Branch:
    """What one guidance pass of one block window last saw."""

    modulated: torch.Tensor
    residual: torch.Tensor
    accumulated: float = 0.0


def modulated_input(block: nn.Module, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    """The first LTX block's timestep-modulated input ``norm1(x)·(1 + scale_msa) + shift_msa`` ``[B, N, D]``.

    Computed as diffusers' ``LTXVideoTransformerBlock.forward`` computes it, from its ``scale_shift_table``.
    """
    bsz = hidden_states.shape[0]
    table = block.scale_shift_table
    ada = table[None, None].to(temb.device) + temb.reshape(bsz, temb.size(1), table.shape[0], -1)
    shift_msa, scale_msa = ada[:, :, 0], ada[:, :, 1]
    return block.norm1(hidden_states) * (1 + scale_msa) + shift_msa


class TeaCache:
    """A residual cache over a diffusers LTX transformer's blocks (see the module docstring).

    Args:
        transformer: The ``LTXVideoTransformer3DModel`` (``TalkingHeadDiT.transformer``).
        threshold: Accumulated rescaled change below which the blocks are skipped (TeaCache4LTX-Video: 0.03
            for about 1.6×, 0.05 for about 2.1×); 0 never skips.
        coefficients: Rescaling polynomial, highest power first.

    Attributes:
        computed: Block passes that ran since the last :meth:`reset`.
        skipped: Block passes served from the cache since the last :meth:`reset`.
    """

    def __init__(
        self, transformer: nn.Module, threshold: float, coefficients: tuple[float, ...] = LTX_COEFFICIENTS
    ) -> None:
        if threshold < 0:
            raise ValueError(f"TeaCache threshold must be >= 0, got {threshold}")
        self.transformer = transformer
        self.threshold = float(threshold)
        self.rescale = np.poly1d(coefficients)
        self.key: Hashable | None = None  # the current pass's cache; None runs the blocks without caching
        self._branches: dict[Hashable, _Branch] = {}
        self.computed = 0
        self.skipped = 0

    def reset(self) -> None:
        """Forget every cached residual and the counts (a new video)."""
        self._branches.clear()
        self.computed = self.skipped = 0

    @contextmanager
    def active(self) -> Iterator[TeaCache]:
        """Route the transformer's block loop through the cache while inside the block."""
        blocks = self.transformer.transformer_blocks
        self.transformer.transformer_blocks = nn.ModuleList([_CachedBlocks(blocks, self)])
        try:
            yield self
        finally:
            self.transformer.transformer_blocks = blocks

    @contextmanager
    def pass_key(self, key: Hashable | None) -> Iterator[None]:
        """Cache the DiT calls inside the block under ``key`` (``None``: run the blocks, cache nothing)."""
        previous, self.key = self.key, key
        try:
            yield
        finally:
            self.key = previous

    def run(self, blocks: nn.ModuleList, hidden_states: torch.Tensor, temb: torch.Tensor, **kwargs) -> torch.Tensor:
        """The blocks' output for ``hidden_states``: computed, or the input plus the cached residual."""
        if self.key is None or self.threshold <= 0:
            return _run_blocks(blocks, hidden_states, temb, kwargs)
        modulated = modulated_input(blocks[0], hidden_states, temb)
        branch = self._branches.get(self.key)
        if branch is not None and branch.modulated.shape == modulated.shape:
            change = (modulated - branch.modulated).abs().mean() / branch.modulated.abs().mean().clamp_min(1e-12)
            accumulated = branch.accumulated + float(self.rescale(float(change)))
            if accumulated < self.threshold:
                branch.accumulated, branch.modulated = accumulated, modulated
                self.skipped += 1
                return hidden_states + branch.residual
        out = _run_blocks(blocks, hidden_states, temb, kwargs)
        self._branches[self.key] = _Branch(modulated=modulated, residual=out - hidden_states)
        self.computed += 1
        return out


def _run_blocks(blocks: nn.ModuleList, hidden_states: torch.Tensor, temb: torch.Tensor, kwargs: dict) -> torch.Tensor:
    for block in blocks:
        hidden_states = block(hidden_states=hidden_states, temb=temb, **kwargs)
    return hidden_states


class _CachedBlocks(nn.Module):
    """Stands in for the whole block list inside the transformer's loop (called once, like one block)."""

    def __init__(self, blocks: nn.ModuleList, cache: TeaCache) -> None:
        super().__init__()
        self.blocks = blocks
        self.cache = cache

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor, **kwargs) -> torch.Tensor:
        """Same signature as an LTX block (keyword arguments, as diffusers' loop passes them)."""
        return self.cache.run(self.blocks, hidden_states, temb, **kwargs)


__all__ = ["LTX_COEFFICIENTS", "TeaCache", "modulated_input"]
