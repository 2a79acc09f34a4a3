"""Eq. 8 with the contrastive term over one step's inputs, on one rank or on a sequence-parallel group.

Pure functions of the DiT, the step's inputs and the parallel layout (the mesh and, under sequence
parallelism, :class:`~trainer.parallel.sequence.SequenceParallel`): no training state, no logging.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.model.dit import TalkingHeadDiT
from trainer.objectives.contrastive import contrastive_sq_error
from trainer.objectives.step import StepInputs
from trainer.parallel.mesh import ParallelMesh
from trainer.parallel.negatives import NegativePlan, exchange_negatives
from trainer.parallel.sequence import SequenceParallel


@dataclass
class StepLoss:
    """A step's loss and what it logs.

    Attributes:
        loss: What this rank backpropagates (scalar).
        metrics: The group's loss and flow-matching loss, the masked fraction, per-condition losses and the
            contrastive negatives used and missing in the whole step (all data-parallel ranks).
        per_sample: Each sample's flow-matching loss ``[B]`` (for the per-flow-time log).
        negatives: The step's negative plan (``None`` when the contrastive weight is 0).
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor | float]
    per_sample: torch.Tensor
    negatives: NegativePlan | None


def shard_video(inputs: StepInputs, x: torch.Tensor, sp: SequenceParallel | None) -> torch.Tensor:
    """This rank's share of a per-video-token tensor ``[B, N, ...]``, aligned with its prediction.

    Without sequence parallelism that is ``x``; with it, ``x`` is placed behind the step's reference tokens
    (zeros there) and sharded like the DiT's input sequence.
    """
    if sp is None:
        return x
    pad = [0, 0] * (x.dim() - 2) + [inputs.num_ref, 0]
    return sp.shard(F.pad(x, pad))


def forward_velocity(
    dit: TalkingHeadDiT, inputs: StepInputs, sp: SequenceParallel | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the DiT; returns ``(pred, target, mask)`` over the tokens this rank holds.

    Without sequence parallelism these are the video tokens ``[B, N, C]``. With it, the whole sequence
    (references first, padding last) is split into equal shards and each rank gets the prediction, target
    and mask of its shard; references and padding carry mask 0.
    """
    if sp is None:
        pred = dit(inputs.tokens, inputs.timestep, inputs.text, inputs.text_mask, inputs.coords, inputs.audio)
        return pred[:, inputs.num_ref :], inputs.target, inputs.mask
    sp.state.valid_tokens = inputs.tokens.shape[1]
    pred = dit(
        sp.shard(inputs.tokens),
        sp.shard(inputs.timestep),
        inputs.text,
        inputs.text_mask,
        sp.shard(inputs.coords, dim=2),
        sp.shard_audio(inputs.audio),
    )
    return pred, shard_video(inputs, inputs.target, sp), shard_video(inputs, inputs.mask, sp)


def step_loss(
    dit: TalkingHeadDiT, inputs: StepInputs, contrastive_lambda: float, mesh: ParallelMesh, sp: SequenceParallel | None
) -> StepLoss:
    """Forward the DiT and compute Eq. 8 with the contrastive term.

    The masked squared error is normalised by the masked element count of the whole sequence group (Eq. 8
    over all shards). Under sequence parallelism each rank's loss is its own shard's share times the group
    size, so that data-parallel gradient averaging over every rank yields the gradient of the group's loss.

    Negatives of the contrastive term come from the batch when it holds two or more samples and from another
    data-parallel rank's sample of the same latent grid when it holds one (:mod:`trainer.parallel.negatives`);
    a sample without either trains without the term and is counted.
    """
    plan: NegativePlan | None = None
    negatives = None
    if contrastive_lambda != 0:
        # A collective over the data-parallel group: every rank reaches it once per step, before the forward.
        negatives, plan = exchange_negatives(inputs.target, inputs.grid, mesh)
    pred, target, mask = forward_velocity(dit, inputs, sp)
    if negatives is not None:
        negatives = shard_video(inputs, negatives, sp)
    total, pos, count = contrastive_sq_error(pred, target, mask, contrastive_lambda, negatives)
    sums = torch.stack([total.detach(), pos.detach(), count])
    scale = 1.0
    if sp is not None:
        sums = sp.all_reduce(sums)
        scale = float(sp.mesh.sp_size)
    count_all = sums[2]
    denom = count_all.sum().clamp(min=1.0)
    per_sample = (sums[1] / count_all.clamp(min=1.0)).detach()
    metrics: dict[str, torch.Tensor | float] = {
        "loss": (sums[0].sum() / denom).detach(),  # the group's loss, whatever this rank's share
        "loss_fm": (sums[1].sum() / denom).detach(),
        "masked_fraction": inputs.mask.float().mean(),
    }
    if plan is not None:
        metrics["contrastive_negatives"] = float(plan.used)
        metrics["contrastive_missing"] = float(plan.missing)
    conditions = [("v2v", inputs.flags.v2v), ("ff", inputs.flags.first_frame), ("audio", inputs.flags.audio)]
    if inputs.flags.identity and inputs.flags.reference is not None:
        conditions.append(("ref", inputs.flags.reference))
    for name, flag in conditions:
        for state, sel in (("on", flag), ("off", ~flag)):
            if sel.any():
                metrics[f"loss_{name}_{state}"] = per_sample[sel].mean()
    return StepLoss(scale * total.sum() / denom, metrics, per_sample, plan)
