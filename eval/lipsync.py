"""The lip-sync benchmark: dub held-out synthetic people with other speech and compare with the ground truth.

Held-out people (a corpus seed never trained on, 25 fps so that clip frames are source frames) go through
data_prep like the training corpus. Each held-out clip is dubbed in V2V lip mode with the speech (Whisper
features from its shard) of a clip of another person, and compared with the exact video a perfect dub would
be: the same person, pose, blinks and light rendered with the mouth of the driving utterance
(:func:`data_prep.synthetic.clips.generate_dub_ground_truth`), over the clip's own span of its source video.

Four videos are scored against that ground truth inside the region a mouth can reach (the lower-face box of
the fully opened mouth, per frame): the trained model's dub, the base model's (no adapter: it cannot hear),
the undubbed source copied through, and the VAE reconstruction of the ground truth itself (the best any
model on this VAE can do). Mouth opening is measured as the difference from the same person rendered with
a closed mouth (:mod:`eval.metrics.dub`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data_prep.synthetic.clips import plan_clip, render_clip
from data_prep.synthetic.corpus import CorpusEntry, load_manifest
from eval.clips import clip_batch, sample_clip
from eval.metrics.dub import (
    box_masks,
    closed_in_silence,
    mouth_opening_change,
    opening_calibration,
    pearson,
    region_mse,
    silent_frames,
)
from eval.metrics.pixel import psnr
from eval.pairing import novel_audio_partners
from eval.sampler.config import SamplerConfig
from eval.sampler.paste import paste, pixel_mask
from eval.sampler.sampler import EulerSampler
from eval.sampler.video_out import decode_latents
from trainer.config.schema import TrainConfig
from trainer.data.decode import ClipSample
from trainer.data.plan import decode_plan
from trainer.data.shard_paths import expand_shards
from trainer.data.transforms import batch_to_device, collate_clips
from trainer.held_out import held_out_errors, loss_plan_groups
from trainer.model.talking_head import TalkingHeadModel
from trainer.model.vae import encode_posterior, normalize_latents
from trainer.stage_model import base_stage_config, build_stage_model

__all__ = [
    "ARMS",
    "DubCase",
    "DubScores",
    "audio_loss_gain",
    "base_model_of",
    "dub_cases",
    "neighbour_correlation",
    "summarize",
]

# The videos scored against the ground truth.
ARMS = ("trained", "base", "source", "vae_ceiling")
# Feather of the paste mask (pixels): soft enough to hide the seam, small beside a 32-pixel token.
PASTE_FEATHER_PX = 3.0


@dataclass
class DubCase:
    """One held-out clip, the speech that drives its dub, and the ground truth of that dub.

    Attributes:
        source: The held-out clip (its shard sample: frames, boxes, references, own Whisper features).
        driving: The clip whose speech drives the dub (another person).
        driving_audio: float32 ``[S]`` 16 kHz waveform of the driving clip (its shard's ``audio.wav``).
        sample_rate: Of ``driving_audio``.
        ground_truth: ``[F, H, W, 3]`` uint8, the perfect dub.
        closed: ``[F, H, W, 3]`` uint8, the same person and poses with the mouth closed.
        masks: ``[F, H, W]`` bool, where a mouth can change (the fully open mouth's lower-face box).
        opening: float32 ``[F]``, the driving utterance's mouth opening (0..1) per frame.
    """

    source: ClipSample
    driving: ClipSample
    driving_audio: np.ndarray
    sample_rate: int
    ground_truth: np.ndarray
    closed: np.ndarray
    masks: np.ndarray
    opening: np.ndarray


def _entry_of(clip: ClipSample, entries: dict[str, CorpusEntry]) -> CorpusEntry:
    stem = Path(clip.record["source"]).stem
    if stem not in entries:
        raise ValueError(f"clip {clip.key}: its source {clip.record['source']} is not in the corpus manifest")
    entry = entries[stem]
    if abs(entry.fps - clip.fps) > 1e-6:
        raise ValueError(
            f"clip {clip.key}: {entry.fps} fps source resampled to {clip.fps} fps; the ground truth of a dub "
            "needs held-out sources at the clips' rate"
        )
    return entry


def _plan(entry: CorpusEntry, span: tuple[int, int]):
    plan = plan_clip(
        entry.seed, entry.fps, entry.num_frames, entry.width, entry.height, entry.sample_rate, zoom=entry.zoom
    )
    return plan.window(*span)


def clip_plan(clip: ClipSample, entries: dict[str, CorpusEntry]):
    """The generator's plan of a clip's frames (true mouth opening, poses, blinks), from its corpus entry.

    Args:
        clip: A clip data_prep cut from a synthetic corpus video at the video's own rate.
        entries: The corpus manifest by video id (:func:`data_prep.synthetic.corpus.load_manifest`).

    Raises:
        ValueError: The clip's source is not in the manifest, or was resampled (no frame-exact plan).
    """
    return _plan(_entry_of(clip, entries), tuple(clip.record["span"]))


def dub_cases(clips: list[tuple[ClipSample, np.ndarray, int]], corpus_dir: str | Path) -> list[DubCase]:
    """Pair every held-out clip with a clip of another source video and render the ground truths.

    Args:
        clips: Held-out clips with their 16 kHz audio (:func:`eval.clips.read_clips`), from a synthetic corpus.
        corpus_dir: That corpus (its ``manifest.json`` gives each video's seed and settings).

    Returns:
        One case per clip (clips of a single video are left out: there is no other person's speech).

    Raises:
        ValueError: A clip's source is not in the manifest, or was resampled.
    """
    entries = {e.video_id: e for e in load_manifest(corpus_dir)}
    sources = [Path(c.record["source"]).stem for c, _, _ in clips]
    cases = []
    for i, ((clip, _, _), j) in enumerate(zip(clips, novel_audio_partners([c for c, _, _ in clips]), strict=True)):
        if sources[j] == sources[i]:
            continue  # no other person's speech among the clips
        driving, audio, rate = clips[j]
        plan = clip_plan(clip, entries)
        drive_plan = clip_plan(driving, entries)
        frames = clip.frames.shape[0]
        if plan.times.shape[0] != frames or drive_plan.times.shape[0] != frames:
            raise ValueError(f"clip {clip.key}: span and frame count disagree ({plan.times.shape[0]} vs {frames})")
        truth = render_clip(plan, mouth_open=drive_plan.mouth_open, audio=drive_plan.audio())
        closed = render_clip(plan, mouth_open=np.zeros(frames, np.float32))
        opened = render_clip(plan, mouth_open=np.ones(frames, np.float32))
        height, width = clip.frames.shape[1:3]
        cases.append(
            DubCase(
                source=clip,
                driving=driving,
                driving_audio=audio,
                sample_rate=rate,
                ground_truth=truth.frames,
                closed=closed.frames,
                masks=box_masks(opened.lower_face_boxes, height, width),
                opening=drive_plan.mouth_open,
            )
        )
    return cases


def neighbour_correlation(video: np.ndarray) -> float:
    """Correlation of horizontally neighbouring pixels (grey): about 0.9+ for natural video, about 0 for noise."""
    grey = np.asarray(video, np.float64).mean(axis=-1)
    a, b = grey[..., :, :-1].ravel(), grey[..., :, 1:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class DubScores:
    """Scores of one case (every arm against the ground truth).

    Attributes:
        mouth_mse: Arm → mouth-region MSE (grey levels²).
        openness_corr: Arm → correlation of the measured opening with the driving track.
        silence_closed: Arm → share of silent frames with a closed mouth (``None``: no silent frame).
        psnr_trained: Whole-frame PSNR of the trained dub against the ground truth (dB).
        neighbour_corr: Arm → neighbouring-pixel correlation of the arm's video.
    """

    mouth_mse: dict[str, float]
    openness_corr: dict[str, float | None]
    silence_closed: dict[str, float | None]
    psnr_trained: float
    neighbour_corr: dict[str, float]


def score_case(case: DubCase, videos: dict[str, np.ndarray], closed: dict[str, np.ndarray] | None = None) -> DubScores:
    """Score each arm's video of a case; the ``vae_ceiling`` arm calibrates the opening scale.

    Args:
        case: The case.
        videos: Arm name → ``[F, H, W, 3]`` uint8 (every name of :data:`ARMS`).
        closed: Arm name → the closed-mouth video as that arm's renderer shows it (for VAE-decoded arms the
            VAE reconstruction of ``case.closed``, so that VAE blur does not count as an open mouth); arms
            not named use ``case.closed``.
    """
    closed = closed or {}
    openings = {arm: mouth_opening_change(v, closed.get(arm, case.closed), case.masks) for arm, v in videos.items()}
    try:
        calibration = opening_calibration(openings["vae_ceiling"], case.opening)
    except ValueError:
        calibration = None
    silent = silent_frames(case.driving_audio, case.sample_rate, case.source.fps, case.source.frames.shape[0])
    return DubScores(
        mouth_mse={arm: region_mse(v, case.ground_truth, case.masks) for arm, v in videos.items()},
        openness_corr={arm: pearson(o, case.opening) for arm, o in openings.items()},
        silence_closed={
            arm: None if calibration is None else closed_in_silence(o, silent, calibration)
            for arm, o in openings.items()
        },
        psnr_trained=psnr(videos["trained"], case.ground_truth),
        neighbour_corr={arm: neighbour_correlation(v) for arm, v in videos.items()},
    )


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(got)) if got else None


def summarize(scores: list[DubScores]) -> dict:
    """The benchmark's JSON keys from per-case scores (means over cases; correlations averaged per clip)."""
    out: dict = {"clips": len(scores)}
    for arm in ARMS:
        out[f"mouth_mse_{arm}"] = _mean([s.mouth_mse[arm] for s in scores])
    src, trained, ceiling = out["mouth_mse_source"], out["mouth_mse_trained"], out["mouth_mse_vae_ceiling"]
    out["gap_closed"] = None
    if None not in (src, trained, ceiling) and src > ceiling:
        out["gap_closed"] = (src - trained) / (src - ceiling)
    out["openness_corr_trained"] = _mean([s.openness_corr["trained"] for s in scores])
    out["openness_corr_base"] = _mean([s.openness_corr["base"] for s in scores])
    out["openness_corr_source"] = _mean([s.openness_corr["source"] for s in scores])
    out["openness_measure_check"] = _mean([s.openness_corr["vae_ceiling"] for s in scores])
    out["silence_closed_trained"] = _mean([s.silence_closed["trained"] for s in scores])
    out["silence_closed_base"] = _mean([s.silence_closed["base"] for s in scores])
    # What a perfect model scores on this VAE: the same check on the reconstruction of the ground-truth dub.
    out["silence_closed_vae_ceiling"] = _mean([s.silence_closed["vae_ceiling"] for s in scores])
    out["psnr_trained_db"] = _mean([s.psnr_trained for s in scores])
    out["neighbour_corr_trained"] = _mean([s.neighbour_corr["trained"] for s in scores])
    out["neighbour_corr_source"] = _mean([s.neighbour_corr["source"] for s in scores])
    return out


def scores_json(scores: DubScores) -> str:
    """One case's scores as JSON."""
    return json.dumps(dataclasses.asdict(scores), sort_keys=True)


@torch.no_grad()
def vae_reconstruction(model: TalkingHeadModel, frames: np.ndarray) -> np.ndarray:
    """Posterior-mean VAE reconstruction of uint8 frames ``[F, H, W, 3]`` (the ceiling arm)."""
    mean, _ = encode_posterior(model.vae, torch.from_numpy(frames)[None].to(model.device))
    return decode_latents(model.vae, normalize_latents(mean, model.vae))[0]


def base_model_of(cfg: TrainConfig, device: torch.device | str) -> TalkingHeadModel:
    """The base model a trained model was built on: its DiT as ``cfg.model`` loads it, without adapter or LoRA."""
    model, _ = build_stage_model(base_stage_config(cfg))
    return model.to(device).eval()


@torch.no_grad()
def dub_video(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    sampler: EulerSampler,
    case: DubCase,
    seed: int,
    identity_refs: bool = True,
    invert_edit: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """V2V lip-mode dub of the case's source clip driven by the driving clip's speech, pasted into the source.

    Outside the generated tokens the VAE only re-renders the clean source, losing detail; a dub keeps the source
    pixels there and takes the generated ones inside the (grown, feathered) mask, as lip-sync tools do.

    Args:
        model: The model that dubs.
        cfg: The training config of the trained model (its data layout and sampling settings).
        sampler: A sampler over ``model.dit``.
        case: The case.
        seed: Seed of the posterior sample.
        identity_refs: Prepend the identity reference tokens.
        invert_edit: Dub by inversion editing (:mod:`eval.sampler.inversion`): the source inverted with its own
            speech, then denoised with the driving speech.

    Returns:
        ``(frames, mask)``: the pasted dub, uint8 ``[F, H, W, 3]``, and the paste mask, float32 ``[F, H, W]``.
    """
    num_refs = cfg.objective.num_reference_frames
    batch = clip_batch(case.source, num_refs, whisper=case.driving.whisper)
    mode, edit = "v2v", None
    if invert_edit:
        mode, batch, edit = "invert_edit", clip_batch(case.source, num_refs), batch
    frames, tokens = sample_clip(
        model, cfg, sampler, batch, mode, "lip", identity_refs, seed, return_mask=True, edit_batch=edit
    )
    vae = model.vae.config
    mask = pixel_mask(
        tokens, frames.shape[0], vae.spatial_compression_ratio, vae.temporal_compression_ratio, PASTE_FEATHER_PX
    )
    return paste(frames, case.source.frames, mask), mask


def run_cases(
    model: TalkingHeadModel,
    base: TalkingHeadModel,
    cfg: TrainConfig,
    sampler_cfg: SamplerConfig,
    cases: list[DubCase],
    seed: int,
    invert_edit: bool = False,
) -> list[tuple[dict, DubScores]]:
    """Every arm's video and scores for each case.

    Args:
        model: The trained model (stage 1 or 2).
        base: :func:`base_model_of` its config.
        cfg: The trained model's training config.
        sampler_cfg: The sampler's settings.
        cases: The cases.
        seed: Seed of the posterior samples (the sampler's noise comes from ``sampler_cfg.seed``).
        invert_edit: Both models dub by inversion editing instead of sampling from noise.

    Returns:
        ``(videos by arm, scores)`` per case.
    """
    loc = cfg.objective.timestep_loc
    trained_sampler = EulerSampler(model.dit, sampler_cfg, loc)
    base_sampler = EulerSampler(base.dit, sampler_cfg, loc)
    out = []
    for i, case in enumerate(cases):
        trained, mask = dub_video(model, cfg, trained_sampler, case, seed + i, invert_edit=invert_edit)
        videos = {
            "trained": trained,
            "base": dub_video(base, cfg, base_sampler, case, seed + i, invert_edit=invert_edit)[0],
            "source": case.source.frames,
            # The best dub on this VAE: the ground truth's reconstruction, pasted the way a dub is.
            "vae_ceiling": paste(vae_reconstruction(model, case.ground_truth), case.ground_truth, mask),
        }
        closed = paste(vae_reconstruction(model, case.closed), case.closed, mask)
        out.append((videos, score_case(case, videos, {"trained": closed, "base": closed, "vae_ceiling": closed})))
    return out


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
