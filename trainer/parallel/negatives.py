"""Negatives of contrastive flow matching across data-parallel ranks (DESIGN §4).

Contrastive flow matching pushes each prediction away from another sample's target ``ε_j − x0_j``
(:mod:`trainer.objectives.contrastive`). A batch of two or more samples pairs each sample with the
previous one of the same batch (the in-batch roll, ``j = i − 1``). A batch of one sample — a bucket of
batch size 1, or the one sample a sequence group splits its tokens over — has no other sample, so its
negative comes from another data-parallel rank. The rule, which every rank evaluates on the same gathered
layouts (so all agree without further messages):

1. Every data-parallel rank shares its layout ``(B, T, h, w)``: batch size and latent grid of the batch.
2. A rank with ``B ≥ 2`` uses the in-batch roll.
3. A rank with ``B = 1`` takes the first sample of the nearest rank before it (``g − 1, g − 2, …`` modulo
   the data-parallel size) whose latent grid equals its own. Then token ``k`` of both targets sits at the
   same (frame, row, column), as in the in-batch roll, whose samples share one grid; a target of another
   grid has no token-wise correspondence with the prediction and is never used.
4. When no other rank has its grid, the sample trains without the term and is counted as ``missing``.

What is exchanged is the whole video-token target of each rank's first sample, not a sequence shard: two
sequence groups can prepend different numbers of reference tokens, so equal shard positions cover
different video tokens; the receiver shards the negative exactly as its own target. The exchange is one
``all_gather`` over the data-parallel group (``dp`` targets of ``T·h·w·C`` elements, in the target's
dtype) and happens only on steps where some rank uses a negative from another rank; the layouts
(``4·dp`` integers) are gathered every step. Ranks of one sequence group do the same exchange in their
own data-parallel groups (:func:`trainer.parallel.mesh.build_mesh`) and so receive the same negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trainer.parallel.mesh import ParallelMesh


@dataclass(frozen=True)
class NegativePlan:
    """Where the negatives of every data-parallel rank come from in one step.

    Attributes:
        batch_sizes: Samples per data-parallel rank.
        partners: Per data-parallel rank with one sample: the rank whose first sample is its negative, or
            ``None`` when no rank has its grid; ``None`` for ranks with ``B ≥ 2`` (in-batch roll).
    """

    batch_sizes: tuple[int, ...]
    partners: tuple[int | None, ...]

    @property
    def used(self) -> int:
        """Samples of the whole step (all data-parallel ranks) trained with a negative."""
        return sum(b if b > 1 else int(p is not None) for b, p in zip(self.batch_sizes, self.partners))

    @property
    def missing(self) -> int:
        """Samples of the whole step trained without a negative (no other sample of their grid)."""
        return sum(1 for b, p in zip(self.batch_sizes, self.partners) if b == 1 and p is None)

    @property
    def exchange(self) -> bool:
        """Whether some rank takes its negative from another rank (the targets must be gathered)."""
        return any(p is not None for p in self.partners)


def plan_negatives(layouts: Sequence[Sequence[int]]) -> NegativePlan:
    """Apply the module's rule to every data-parallel rank's layout.

    Args:
        layouts: ``(B, T, h, w)`` per data-parallel rank, in rank order.

    Returns:
        The plan (the same on every rank given the same layouts).
    """
    sizes = tuple(int(lay[0]) for lay in layouts)
    grids = [tuple(int(v) for v in lay[1:]) for lay in layouts]
    n = len(layouts)
    partners: list[int | None] = []
    for rank in range(n):
        partner = None
        if sizes[rank] == 1:
            for back in range(1, n):
                other = (rank - back) % n
                if grids[other] == grids[rank]:
                    partner = other
                    break
        partners.append(partner)
    return NegativePlan(sizes, tuple(partners))


def exchange_negatives(
    target: torch.Tensor, grid: tuple[int, int, int], mesh: ParallelMesh
) -> tuple[torch.Tensor | None, NegativePlan]:
    """This rank's negative targets by the module's rule (collective over the data-parallel group).

    Every rank of the data-parallel group must call this in the same step.

    Args:
        target: The video-token targets ``ε − x0`` of this rank's batch ``[B, N, C]`` (whole, not a sequence
            shard), ``N = T·h·w``.
        grid: The batch's latent grid ``(T, h, w)``.
        mesh: This rank's mesh.

    Returns:
        ``(negatives, plan)``: negatives ``[B, N, C]`` aligned with ``target`` (the in-batch roll for
        ``B ≥ 2``, another rank's sample for ``B = 1``), or ``None`` when this rank has none.
    """
    bsz, n, channels = target.shape
    if n != grid[0] * grid[1] * grid[2]:
        raise ValueError(f"target has {n} tokens, the grid {grid} {grid[0] * grid[1] * grid[2]}")
    mine = torch.tensor([bsz, *grid], dtype=torch.int64, device=target.device)
    if mesh.dp_size > 1:
        every = [torch.empty_like(mine) for _ in range(mesh.dp_size)]
        dist.all_gather(every, mine, group=mesh.dp_group)
        layouts = [t.tolist() for t in every]
    else:
        layouts = [mine.tolist()]
    plan = plan_negatives(layouts)
    gathered = None
    if plan.exchange:
        # Every rank of the group joins, whatever its own batch size. all_gather takes equal sizes: each rank's
        # first sample, flattened and zero-padded to the largest.
        width = max(lay[1] * lay[2] * lay[3] for lay in layouts) * channels
        flat = torch.zeros(width, dtype=target.dtype, device=target.device)
        flat[: n * channels] = target[0].detach().reshape(-1)
        gathered = [torch.empty_like(flat) for _ in range(mesh.dp_size)]
        dist.all_gather(gathered, flat, group=mesh.dp_group)
    if bsz > 1:
        return torch.roll(target, shifts=1, dims=0), plan
    partner = plan.partners[mesh.dp_rank]
    if partner is None or gathered is None:
        return None, plan
    return gathered[partner][: n * channels].view(1, n, channels), plan
