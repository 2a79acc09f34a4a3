"""The held-out loss: the trainer's masked flow-matching error at fixed flow times on batches read in order.

Used by validation during training (:class:`eval.validation.ValidationCallback`) and by the lip-sync
benchmark (:func:`eval.lipsync.audio_gain.audio_loss_gain`). The first ``limit`` batches of held-out shards are
planned in the training loader's layout (same buckets and token budget, cached latents when present) but read once in
file order without shuffling, with the plans' random resize/crop seeded by ``data.seed``. Each batch is
encoded once with a fixed generator, then noised with the same ``ε`` at every flow time ``t = q`` (all samples
at the same ``t``) under the V2V inference conditions (V2V mask on, first frame off, audio on, identity
references as asked). The error is Eq. 8's masked flow-matching error without the contrastive term
(negatives are a training device; the plain error is comparable across runs).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict

import torch
import webdataset as wds

from trainer.config.schema import TrainConfig
from trainer.data.buckets import Compression
from trainer.data.datamodule import feature_spec, stream_settings
from trainer.data.plan import Plan
from trainer.data.schema import ShardSampleError
from trainer.model.talking_head import TalkingHeadModel
from trainer.objectives.conditions import ConditionFlags
from trainer.objectives.flow_matching import masked_sq_error
from trainer.objectives.step import step_inputs
from trainer.objectives.step_loss import forward_velocity
from trainer.parallel.sequence import SequenceParallel

log = logging.getLogger("talkdit.held_out")


def rank_share(num_items: int, rank: int, world: int) -> tuple[list[int], int]:
    """Which items a rank handles: item ``i`` belongs to rank ``i % world``, padded to equal length.

    Args:
        num_items: Items in all (clips or loss batches).
        rank: This rank.
        world: Ranks in all.

    Returns:
        ``(indices, real)``: ``ceil(num_items / world)`` item indices (the first ``real`` are this rank's
        own; the rest repeat its last one, or item ``rank % num_items`` when it owns none) — empty when
        ``num_items`` is 0.
    """
    if num_items == 0:
        return [], 0
    own = list(range(rank, num_items, world))
    per_rank = math.ceil(num_items / world)
    pad = own[-1] if own else rank % num_items
    return own + [pad] * (per_rank - len(own)), len(own)


def quantile_key(q: float) -> str:
    """Log key of the held-out loss at flow time ``q``, e.g. ``val/loss_t0.3``."""
    return f"val/loss_t{q:g}"


def loss_plan_groups(cfg, urls: list[str], limit: int) -> list[list[Plan]]:
    """The first ``limit`` full batches of plans of the validation shards, in file order (no shuffle).

    The plans are the training loader's (:func:`trainer.data.plan.plan_sample`, epoch 0, ``data.seed``), so
    a batch has the training token budget; nothing is decoded here. Bad samples are skipped with a warning.

    Args:
        cfg: The training config (``data``, ``audio``, ``objective``).
        urls: Validation shard paths.
        limit: Batches wanted.

    Returns:
        Up to ``limit`` groups of plans, each one batch of one bucket.
    """
    settings = stream_settings(
        cfg.data, feature_spec(cfg), cfg.objective.num_reference_frames, Compression.of(cfg.model.vae)
    )
    pending: OrderedDict[tuple, list[Plan]] = OrderedDict()
    groups: list[list[Plan]] = []
    if limit == 0:
        return groups
    for url in urls:
        for raw in wds.tarfile_samples([{"url": url}]):
            try:
                plan = settings.plan(raw, 0)
            except ShardSampleError as err:
                log.warning("validation: skipping a bad sample: %s", err)
                continue
            group = pending.setdefault(plan.group_key, [])
            group.append(plan)
            if len(group) == plan.bucket.batch_size:
                del pending[plan.group_key]
                groups.append(group)
                if len(groups) == limit:
                    return groups
    return groups


@torch.no_grad()
def held_out_errors(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    batch: dict,
    quantiles: list[float],
    seed: int,
    identity_refs: bool,
    sp: SequenceParallel | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked flow-matching error of one batch at fixed flow times (the trainer's step, conditions fixed).

    The trainer's own step inputs (:func:`trainer.objectives.step.step_inputs`) with
    its random draws fixed: conditions are V2V inference's (V2V on, first frame off, audio on, identity
    references per ``identity_refs``), the latents are encoded once and the noise is drawn from the same
    seeded generator for every ``q``, and every sample is at ``t = q``.

    Args:
        model: The model (on its device, in eval mode).
        cfg: The training config it was built from.
        batch: A loader batch on the model's device.
        quantiles: Flow times ``Q`` in (0, 1).
        seed: Seed of the posterior sample and the noise.
        identity_refs: Prepend the identity reference tokens.
        sp: The run's sequence parallelism, when the model is sharded over a sequence group.

    Returns:
        ``(error sums [Q], masked element counts [Q])`` float32 on the model's device (Eq. 8 before
        normalisation, summed over the batch).
    """
    dev = model.device
    x0, ref_lat = model.encode_latents(batch, torch.Generator(device=dev).manual_seed(seed))
    bsz = x0.shape[0]
    yes = torch.ones(bsz, dtype=torch.bool, device=dev)
    flags = ConditionFlags(audio=yes, first_frame=~yes, v2v=yes, identity=identity_refs)
    sums, counts = [], []
    for q in quantiles:
        # The same generator state for every q: the same noise at every flow time.
        gen = torch.Generator(device=dev).manual_seed(seed + 1)
        t = torch.full((bsz,), float(q), device=dev)
        step = step_inputs(model, cfg, batch, x0, ref_lat, gen, flags, t)
        pred, tgt, mask = forward_velocity(model.dit, step, sp)
        err, count = masked_sq_error(pred, tgt, mask)
        sums.append(err.sum())
        counts.append(count.sum())
    return torch.stack(sums).float(), torch.stack(counts).float()


__all__ = ["held_out_errors", "loss_plan_groups", "quantile_key", "rank_share"]
