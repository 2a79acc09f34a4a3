"""The one step that applies a run's parallelism to the plain model, like torchtitan's ``parallelize``.

Sequence parallelism swaps the DiT's self-attention processors (:mod:`trainer.parallel.sequence`); FSDP2 then
shards the DiT over the data-parallel ranks (:mod:`trainer.parallel.fsdp`). The frozen VAE and text encoder
stay whole. The model's code knows neither.
"""

from __future__ import annotations

from trainer.config.schema import TrainConfig
from trainer.model.talking_head import TalkingHeadModel
from trainer.parallel.fsdp import shard_dit
from trainer.parallel.mesh import ParallelMesh
from trainer.parallel.sequence import SequenceParallel, sequence_parallel


def parallelize(
    model: TalkingHeadModel, mesh: ParallelMesh, cfg: TrainConfig, fsdp_mesh=None
) -> SequenceParallel | None:
    """Apply ``parallel`` (sequence parallelism) and ``strategy`` (FSDP2) to the model, in place.

    Args:
        model: The model (its DiT is modified).
        mesh: This rank's data x sequence mesh.
        cfg: The run's config (``parallel.size``/``mode``/``ulysses_degree``; ``strategy.kind`` and
            ``reshard_after_forward``).
        fsdp_mesh: The device mesh FSDP2 shards over (the strategy's data-parallel mesh); used when
            ``strategy.kind`` is ``fsdp``.

    Returns:
        The handle the training step shards its inputs with, or ``None`` without sequence parallelism.

    Raises:
        ValueError: FSDP without ``fsdp_mesh``.
    """
    par, st = cfg.parallel, cfg.strategy
    sp = sequence_parallel(model.dit, mesh, par.mode, par.ulysses_degree) if par.size > 1 else None
    if st.kind == "fsdp":
        if fsdp_mesh is None:
            raise ValueError("strategy.kind=fsdp: parallelize needs the strategy's data-parallel device mesh")
        shard_dit(model.dit, fsdp_mesh, st.reshard_after_forward)
    return sp
