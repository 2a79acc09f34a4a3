"""FSDP2 sharding of the audio-conditioned DiT (``fully_shard`` per unit), applied from outside the model."""

from __future__ import annotations

import torch
from torch.distributed.fsdp import fully_shard


def shard_dit(dit: torch.nn.Module, mesh, reshard_after_forward: bool) -> None:
    """Apply FSDP2 to the audio-conditioned DiT: each block, the audio projection, then the rest at the root.

    The root unit is the wrapper (``TalkingHeadDiT``), whose forward runs the audio projection before the
    transformer; FSDP2 needs the root's forward to come first.
    """
    transformer = dit.transformer
    units = list(transformer.transformer_blocks)
    if hasattr(transformer, "audio_projection"):
        units.append(transformer.audio_projection)
    for unit in units:
        fully_shard(unit, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(dit, mesh=mesh, reshard_after_forward=reshard_after_forward)
