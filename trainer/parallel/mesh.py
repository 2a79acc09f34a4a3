"""The data-parallel x sequence-parallel process mesh.

Ranks are laid out sequence-major: the ``size`` consecutive ranks ``[g·size, (g+1)·size)`` form sequence
group ``g`` (they share every sample and split its tokens), and data-parallel rank ``g`` is that group.
This is yunchang's layout (``set_seq_parallel_pg``), so its ring and Ulysses groups line up with ours.
The data-parallel group of a rank is the ranks at the same position of every sequence group
(``{r, r + size, r + 2·size, …}``): they hold the same token shard of different samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist


@dataclass
class ParallelMesh:
    """Where this rank sits.

    Attributes:
        world: All ranks.
        sp_size: Ranks per sequence group.
        sp_rank: This rank within its sequence group.
        dp_size: Sequence groups (data-parallel degree).
        dp_rank: This rank's sequence group.
        sp_group: Process group of this rank's sequence group (``None`` when ``sp_size == 1``).
        dp_group: Process group of the ranks at this rank's position in every sequence group (``None``: the
            default group when ``sp_size == 1``, or no group at all when ``dp_size == 1``).
    """

    world: int
    sp_size: int
    sp_rank: int
    dp_size: int
    dp_rank: int
    sp_group: object | None = None
    dp_group: object | None = None

    @property
    def sequence_parallel(self) -> bool:
        """More than one rank per sample."""
        return self.sp_size > 1


def single_process_mesh() -> ParallelMesh:
    """The mesh of a run without any parallelism."""
    return ParallelMesh(world=1, sp_size=1, sp_rank=0, dp_size=1, dp_rank=0)


def build_mesh(sp_size: int) -> ParallelMesh:
    """Create the sequence groups of an initialised default process group (every rank must call this).

    Args:
        sp_size: Ranks per sequence group; must divide the world size.

    Returns:
        This rank's mesh.
    """
    if not dist.is_available() or not dist.is_initialized():
        if sp_size != 1:
            raise RuntimeError(f"sequence parallelism of size {sp_size} needs an initialised process group")
        return single_process_mesh()
    world, rank = dist.get_world_size(), dist.get_rank()
    if world % sp_size:
        raise ValueError(f"parallel.size={sp_size} does not divide the world size {world}")
    group = dp_group = None
    for start in range(0, world, sp_size):
        ranks = list(range(start, start + sp_size))
        pg = dist.new_group(ranks) if sp_size > 1 else None  # new_group is collective: every rank makes every group
        if rank in ranks:
            group = pg
    dp_size = world // sp_size
    if sp_size > 1 and dp_size > 1:  # with sp_size 1 the data-parallel group is the default group
        for position in range(sp_size):
            ranks = list(range(position, world, sp_size))
            pg = dist.new_group(ranks)
            if rank in ranks:
                dp_group = pg
    return ParallelMesh(world, sp_size, rank % sp_size, dp_size, rank // sp_size, group, dp_group)
