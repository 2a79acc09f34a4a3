"""The lip-sync benchmark's check that a model listens: held-out loss with each clip's own speech and another's."""

from __future__ import annotations

import torch

from trainer.config.schema import TrainConfig
from trainer.data.plan import decode_plan
from trainer.data.shard_paths import expand_shards
from trainer.data.transforms import batch_to_device, collate_clips
from trainer.held_out import held_out_errors, loss_plan_groups
from trainer.model.talking_head import TalkingHeadModel

# Flow times of the audio loss gain: the validation loss's quantiles.
GAIN_FLOW_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)


@torch.no_grad()
def audio_loss_gain(
    model: TalkingHeadModel, cfg: TrainConfig, shards: str, batches: int = 4, seed: int = 0
) -> dict | None:
    """Does the model use what the audio says? Held-out masked loss with each clip's own speech and another's.

    The trainer's own held-out loss (:func:`trainer.held_out.held_out_errors`: V2V, audio on, fixed flow times
    and noise) on the first ``batches`` training-layout batches of ``shards``, once with each clip's Whisper
    features and once with the features of the next clip in its batch. A model that ignores the audio, or
    uses it only as a constant, scores the same on both; the gain is measured in latent space, so it shows
    learning even where the VAE hides the mouth from pixel metrics.

    Args:
        model: A trained model with an audio adapter (eval mode).
        cfg: Its training config.
        shards: Held-out shards.
        batches: Batches of the training layout to use (batches of one clip are skipped).
        seed: Seed of the posterior samples and the noise.

    Returns:
        ``{"own": loss, "other": loss, "gain": other − own, "relative_gain": gain / own, "flow_times": […],
        "clips": N}``, or ``None`` without a batch of two or more clips.
    """
    sums = {"own": 0.0, "other": 0.0}
    count, clips = 0.0, 0
    for j, group in enumerate(loss_plan_groups(cfg, expand_shards(shards, key="shards"), batches)):
        if len(group) < 2:
            continue
        refs, caption = cfg.objective.num_reference_frames, cfg.data.default_caption
        batch = collate_clips([decode_plan(p, refs, caption) for p in group])
        batch = batch_to_device(batch, model.device)
        other = dict(batch, whisper=batch["whisper"].roll(1, 0), whisper_len=batch["whisper_len"].roll(1, 0))
        for name, b in (("own", batch), ("other", other)):
            s, c = held_out_errors(model, cfg, b, list(GAIN_FLOW_TIMES), seed + j, identity_refs=False)
            sums[name] += float(s.sum())
            if name == "own":
                count += float(c.sum())
        clips += len(group)
    if count == 0:
        return None
    own, other = sums["own"] / count, sums["other"] / count
    return {
        "own": own,
        "other": other,
        "gain": other - own,
        "relative_gain": (other - own) / own,
        "flow_times": list(GAIN_FLOW_TIMES),
        "clips": clips,
    }
