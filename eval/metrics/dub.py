"""Measuring a dub against its ground truth: mouth-region error, mouth opening, closure in silence.

These metrics need what only a synthetic benchmark has: the exact video a perfect dub would be, and the
same person rendered with the mouth closed at the same head pose
(:func:`data_prep.synthetic.clips.generate_dub_ground_truth`).

- **Mouth-region MSE**: mean squared pixel error (uint8 scale) over the pixels inside each frame's box.
- **Mouth opening**: per frame, the mean absolute difference between the frame and the closed-mouth frame
  inside the box (grey levels). The person, pose, light and camera noise are the same, so what differs is
  what the mouth did: 0 for a closed mouth, growing as lips part, teeth and cavity show and the jaw drops.
  A video decoded by a VAE is compared with the VAE's reconstruction of the closed-mouth frames, so that
  the VAE's blur does not read as an open mouth.
  Correlation over frames with the driving utterance's opening track says whether the mouth follows the
  speech. The same measure on the VAE reconstruction of the ground truth checks that the measure (and the
  VAE) can see mouths at all.
- **Closed in silence**: the share of the frames inside silent spans of the driving audio whose opening,
  mapped to the driving track's units by a line fitted on a reference video (the VAE reconstruction of the
  ground truth), stays below a threshold.
"""

from __future__ import annotations

import math

import numpy as np

from eval.metrics.mouth import frame_rms_dbfs

__all__ = [
    "box_masks",
    "closed_in_silence",
    "mouth_opening_change",
    "opening_calibration",
    "pearson",
    "region_mse",
    "silent_frames",
]


def box_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-frame boolean masks of pixel boxes.

    Args:
        boxes: ``[F, 4]`` or ``[K, F, 4]`` (x0, y0, x1, y1) pixels; with ``K`` sets, each frame's mask is the
            union of its ``K`` boxes. Boxes are grown to whole pixels (floor/ceil) and clipped to the frame.
        height: Frame height.
        width: Frame width.

    Returns:
        ``[F, H, W]`` bool.
    """
    sets = np.asarray(boxes, np.float64)
    sets = sets[None] if sets.ndim == 2 else sets
    out = np.zeros((sets.shape[1], height, width), bool)
    for boxes_k in sets:
        for i, (x0, y0, x1, y1) in enumerate(boxes_k):
            if not np.isfinite([x0, y0, x1, y1]).all():
                continue
            r0, r1 = max(math.floor(y0), 0), min(math.ceil(y1), height)
            c0, c1 = max(math.floor(x0), 0), min(math.ceil(x1), width)
            out[i, r0:r1, c0:c1] = True
    return out


def region_mse(video: np.ndarray, reference: np.ndarray, masks: np.ndarray) -> float:
    """Mean squared error (uint8 grey levels²) over the masked pixels of every frame.

    Args:
        video: ``[F, H, W, 3]`` uint8.
        reference: ``[F, H, W, 3]`` uint8.
        masks: ``[F, H, W]`` bool (:func:`box_masks`).

    Raises:
        ValueError: Shapes differ or no pixel is masked.
    """
    if video.shape != reference.shape or masks.shape != video.shape[:3]:
        raise ValueError(f"video {video.shape}, reference {reference.shape} and masks {masks.shape} do not match")
    if not masks.any():
        raise ValueError("no pixel inside the boxes")
    diff = video.astype(np.float64) - reference.astype(np.float64)
    return float((diff**2)[masks].mean())


def mouth_opening_change(video: np.ndarray, closed: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mouth opening per frame: mean |video − closed-mouth video| inside the mask (grey levels).

    Args:
        video: ``[F, H, W, 3]`` uint8, the frames to measure.
        closed: ``[F, H, W, 3]`` uint8, the same person and poses with the mouth closed.
        masks: ``[F, H, W]`` bool, the region where a mouth can move (:func:`box_masks`).

    Returns:
        float64 ``[F]``; NaN for frames with an empty mask.
    """
    diff = np.abs(video.astype(np.float64) - closed.astype(np.float64)).mean(axis=-1)
    out = np.full(video.shape[0], np.nan)
    for i in range(video.shape[0]):
        if masks[i].any():
            out[i] = diff[i][masks[i]].mean()
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation over the frames where both are finite; ``None`` with fewer than 3 or no variance."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def silent_frames(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int, dbfs: float = -45.0) -> np.ndarray:
    """``[F]`` bool: video frames whose span of the audio is quieter than ``dbfs`` (:func:`frame_rms_dbfs`)."""
    level = frame_rms_dbfs(audio, sample_rate, fps, num_frames)
    return np.nan_to_num(level, nan=0.0) < dbfs


def opening_calibration(measured: np.ndarray, track: np.ndarray) -> tuple[float, float]:
    """Least-squares line ``track ≈ a · measured + b`` over finite frames; maps measured openings to track units.

    Raises:
        ValueError: Fewer than 2 usable frames or no variation in ``measured``.
    """
    m, t = np.asarray(measured, np.float64), np.asarray(track, np.float64)
    ok = np.isfinite(m) & np.isfinite(t)
    if ok.sum() < 2 or m[ok].std() == 0:
        raise ValueError("cannot calibrate the mouth opening: fewer than 2 frames or no variation")
    a, b = np.polyfit(m[ok], t[ok], 1)
    return float(a), float(b)


def closed_in_silence(
    measured: np.ndarray, silent: np.ndarray, calibration: tuple[float, float], closed_below: float = 0.1
) -> float | None:
    """Share of silent frames whose calibrated opening is below ``closed_below`` (track units, 0..1).

    Returns:
        The share, or ``None`` when no frame is silent.
    """
    a, b = calibration
    opening = a * np.asarray(measured, np.float64) + b
    use = np.asarray(silent, bool) & np.isfinite(opening)
    if not use.any():
        return None
    return float((opening[use] < closed_below).mean())
