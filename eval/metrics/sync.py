"""Sync-C, Sync-D and the AV offset: a thin wrapper over data_prep's SyncNet (:mod:`data_prep.models.syncnet`).

The scoring, crops and model are data_prep's reproduction of the official ``joonson/syncnet_python``
(:func:`~data_prep.models.syncnet_scoring.score_clip`, :func:`~data_prep.models.syncnet_crops.crop_faces`,
:func:`~data_prep.models.syncnet_crops.smooth_boxes`, :func:`~data_prep.models.syncnet.load_syncnet`). This module
is the **direct** protocol: frames and audio stay in memory, and it only supplies what a generated video
lacks: per-frame face boxes from the repository's MediaPipe detector (:class:`data_prep.faces.FaceAnalyzer`,
largest face; frames without a detection take the nearest detected frame's box) and the conversion to
SyncNet's 25 fps and 16 kHz with the project's own rules, the ones data_prep cuts clips with
(:func:`data_prep.frame_rate.nearest_frames`, :func:`data_prep.audio.resample_audio`). The ``official``
protocol, which re-encodes files the way published numbers were computed, is :mod:`eval.metrics.sync_official`.

- Sync-C: SyncNet confidence (median − minimum of the per-offset mean distances; higher is better).
- Sync-D: the minimum mean distance (lower is better).
- AV offset: frames at 25 fps, positive when the audio leads the video.
"""

from __future__ import annotations

import numpy as np

from data_prep.audio import resample_audio as resample_mono
from data_prep.faces import FaceAnalyzer
from data_prep.frame_rate import SYNCNET_FPS, resample_indices
from data_prep.models.syncnet import SyncNet, load_syncnet
from data_prep.models.syncnet_crops import crop_faces, smooth_boxes
from data_prep.models.syncnet_scoring import SYNCNET_SAMPLE_RATE, SyncScores, score_clip
from eval.metrics.video import as_video

__all__ = ["face_boxes", "load_syncnet", "resample_audio", "resample_frames", "sync_scores"]


def face_boxes(video: np.ndarray, long_side: int = 640, min_confidence: float = 0.5) -> np.ndarray:
    """The largest face's box in every frame, gaps filled from the nearest frame with a detection.

    Args:
        video: ``[T, H, W, 3]`` RGB video.
        long_side: Detection runs on frames downscaled to this longer side.
        min_confidence: Detector threshold.

    Returns:
        float64 ``[T, 4]`` xyxy source-pixel boxes.

    Raises:
        ValueError: No frame has a face.
    """
    frames = as_video(video)
    boxes = np.full((frames.shape[0], 4), np.nan)
    with FaceAnalyzer(long_side=long_side, min_confidence=min_confidence, use_mesh=False) as analyzer:
        for i, frame in enumerate(frames):
            found = analyzer(frame)
            if found.count:
                boxes[i] = found.boxes[0]
    have = np.flatnonzero(np.isfinite(boxes[:, 0]))
    if have.size == 0:
        raise ValueError(f"no face detected in any of the {frames.shape[0]} frames")
    nearest = have[np.abs(np.arange(frames.shape[0])[:, None] - have[None, :]).argmin(axis=1)]
    return boxes[nearest]


def resample_frames(frames: np.ndarray, fps: float, target_fps: float = SYNCNET_FPS) -> np.ndarray:
    """``[T, ...]`` at ``fps`` → ``target_fps`` with the project's frame-rate rule (nearest source frame per tick).

    Returns:
        ``[T', ...]`` with ``T' = floor(T · target_fps / fps)`` (:func:`data_prep.frame_rate.resample_indices`);
        ``frames`` itself when the rates match.
    """
    if abs(fps - target_fps) < 1e-6:
        return frames
    return frames[resample_indices(frames.shape[0], fps, target_fps)]


def resample_audio(audio: np.ndarray, sample_rate: int, target_rate: int = SYNCNET_SAMPLE_RATE) -> np.ndarray:
    """Mono ``[S]`` audio at ``target_rate``, float32 (int16 is scaled by 1/32768), with the project's resampler."""
    return resample_mono(audio, sample_rate, target_rate)


def sync_scores(
    model: SyncNet,
    video: np.ndarray,
    audio: np.ndarray,
    fps: float,
    sample_rate: int = SYNCNET_SAMPLE_RATE,
    boxes: np.ndarray | None = None,
    vshift: int = 15,
    crop_scale: float = 0.4,
    batch_size: int = 20,
) -> SyncScores:
    """SyncNet scores of one talking-head video.

    Args:
        model: From :func:`load_syncnet` (official ``syncnet_v2.model``).
        video: ``[T, H, W, 3]`` RGB video.
        audio: ``[S]`` mono audio of the same span.
        fps: Video frame rate (resampled to 25 fps when different).
        sample_rate: Audio rate (resampled to 16 kHz when different).
        boxes: ``[T, 4]`` xyxy face boxes at the video's own rate; detected when ``None``.
        vshift: Largest offset searched, in 25 fps frames.
        crop_scale: Official crop margin.
        batch_size: Windows per forward pass.

    Returns:
        data_prep's :class:`~data_prep.models.syncnet_scoring.SyncScores` (``confidence`` = Sync-C, ``min_dist`` =
        Sync-D, ``offset_frames`` = AV offset).
    """
    frames = as_video(video)
    if boxes is None:
        boxes = face_boxes(frames)
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape != (frames.shape[0], 4):
        raise ValueError(f"boxes must be [T, 4] = [{frames.shape[0]}, 4], got {list(boxes.shape)}")
    frames_25, boxes_25 = resample_frames(frames, fps), resample_frames(boxes, fps)
    crops = crop_faces(frames_25, smooth_boxes(boxes_25), crop_scale)
    return score_clip(
        model, crops, resample_audio(audio, sample_rate), fps=SYNCNET_FPS, batch_size=batch_size, vshift=vshift
    )
