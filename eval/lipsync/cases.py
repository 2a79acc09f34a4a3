"""The lip-sync benchmark's cases: held-out clips, the speech of another person that drives each, and the truth.

The ground truth of a dub is the exact video a perfect dub would be: the same person, pose, blinks and light
rendered with the mouth of the driving utterance (:func:`data_prep.synthetic.clips.generate_dub_ground_truth`),
over the clip's own span of its source video, from the synthetic corpus's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from data_prep.synthetic.clips import plan_clip, render_clip
from data_prep.synthetic.corpus import CorpusEntry, load_manifest
from eval.metrics.dub import (
    box_masks,
)
from eval.pairing import novel_audio_partners
from trainer.data.decode import ClipSample


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
        reach: float32 ``[F, H, W]`` in [0, 1], the pixels this person's mouth can change, feathered
            (:func:`mouth_reach`): a paste mask that follows the lips rather than the tokens.
    """

    source: ClipSample
    driving: ClipSample
    driving_audio: np.ndarray
    sample_rate: int
    ground_truth: np.ndarray
    closed: np.ndarray
    masks: np.ndarray
    opening: np.ndarray
    reach: np.ndarray


# A pixel belongs to the mouth's reach where the open and closed renders differ by more than this (grey levels,
# above the renderer's anti-aliasing); the reach is then grown and feathered by these many pixels.
REACH_THRESHOLD = 6
REACH_GROW_PX = 2
REACH_FEATHER_PX = 1.5


def mouth_reach(opened: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """Paste weights of the pixels a mouth can change: where its fully open and closed renders differ.

    The same person, pose and light rendered with the mouth fully open and closed differ only where lips,
    teeth and cavity can be; every intermediate mouth lies between the two. Grown by :data:`REACH_GROW_PX`
    and feathered, it holds every pixel a dub of this clip needs to change, and nothing of the static skin
    around it, which a dub can take from the source.

    Args:
        opened: ``[F, H, W, 3]`` uint8, the fully open mouth.
        closed: ``[F, H, W, 3]`` uint8, the closed mouth.

    Returns:
        float32 ``[F, H, W]`` in [0, 1].
    """
    changed = np.abs(opened.astype(np.int16) - closed.astype(np.int16)).max(axis=-1) > REACH_THRESHOLD
    side = 2 * REACH_GROW_PX + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    out = np.empty(changed.shape, np.float32)
    for i, frame in enumerate(changed.astype(np.uint8)):
        out[i] = cv2.GaussianBlur(cv2.dilate(frame, kernel).astype(np.float32), (0, 0), REACH_FEATHER_PX)
    return np.clip(out, 0.0, 1.0)


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
                reach=mouth_reach(opened.frames, closed.frames),
            )
        )
    return cases
