"""SyncNet's face crops, as the official ``joonson/syncnet_python`` cuts them (``run_pipeline.py``: ``crop_video``).

Detections are turned into a centre and half-size ``s = max(w, h)/2``, each median-filtered over frames with
kernel 13 (:func:`smooth_boxes`); the frame is padded with grey (110) and a square of side
``2·s·(1 + crop_scale)`` is cut, centred horizontally on the face and from ``s`` above the face centre
downwards (so the mouth is inside), then resized to 224×224 with bilinear interpolation (:func:`crop_faces`).
The official pipeline also re-encodes video at 25 fps first. The crops feed
:func:`data_prep.models.syncnet_scoring.score_clip`.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.signal import medfilt

__all__ = ["CROP_SIZE", "crop_faces", "smooth_boxes"]

CROP_SIZE = 224
CROP_PAD_VALUE = 110  # grey the official crop pads the frame with
BOX_MEDIAN_KERNEL = 13  # official median filter over per-frame detections


def smooth_boxes(boxes: np.ndarray, kernel_size: int = BOX_MEDIAN_KERNEL) -> np.ndarray:
    """Median-filter per-frame face boxes the way the official pipeline does before cropping.

    The official ``crop_video`` turns each box into a centre ``(x, y)`` and half-size ``s = max(w, h)/2`` and
    applies ``scipy.signal.medfilt(·, 13)`` to each over the frames of a track (zero-padded at the ends, as
    ``medfilt`` is). The result is returned as square xyxy boxes ``[x − s, y − s, x + s, y + s]``, which
    :func:`crop_faces` maps back to the same centre and size.

    Args:
        boxes: ``[F, 4]`` xyxy pixel boxes of one face track.
        kernel_size: Odd median kernel length in frames.

    Returns:
        float64 ``[F, 4]`` smoothed square xyxy boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [F, 4] xyxy, got {list(boxes.shape)}")
    s = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel_size)
    x = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel_size)
    y = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel_size)
    return np.stack([x - s, y - s, x + s, y + s], axis=1)


def crop_faces(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    """Cut SyncNet's 224×224 face crops, reproducing the official ``crop_video`` geometry.

    Per frame, with ``s = max(w, h)/2`` and ``(x, y)`` the box centre: the frame is padded by
    ``p = int(s·(1 + 2·crop_scale))`` grey (110) pixels on every side, the padded rows
    ``int(y + p − s) : int(y + p + s·(1 + 2·crop_scale))`` and columns
    ``int(x + p − s·(1 + crop_scale)) : int(x + p + s·(1 + crop_scale))`` are taken, and the patch is resized
    to 224×224 with ``cv2.resize`` (bilinear). The face is centred horizontally; vertically the crop starts
    ``s`` above the face centre, so the centre lands at row ``224 / (2·(1 + crop_scale))`` (80 for 0.4) and
    the extra height goes below the face, where the mouth is. The padding is only materialised where the
    crop leaves the frame. Smoothing boxes over time (:func:`smooth_boxes`) is a separate step.

    Args:
        frames: ``[F, H, W, 3]`` uint8 frames (any channel order; it is kept).
        boxes: ``[F, 4]`` xyxy face boxes in pixels.
        crop_scale: Margin around the face (official default 0.4).

    Returns:
        ``[F, 224, 224, 3]`` uint8 crops in the channel order of ``frames``.
    """
    frames = np.asarray(frames)
    boxes = np.asarray(boxes, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if boxes.shape != (frames.shape[0], 4):
        raise ValueError(f"boxes must be [F, 4] = [{frames.shape[0]}, 4], got {list(boxes.shape)}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes must be finite")
    height, width = frames.shape[1:3]
    out = np.empty((frames.shape[0], CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    for i, (frame, (x0, y0, x1, y1)) in enumerate(zip(frames, boxes)):
        s = max(y1 - y0, x1 - x0) / 2
        if s <= 0:
            raise ValueError(f"frame {i}: empty face box {[x0, y0, x1, y1]}")
        pad = int(s * (1 + 2 * crop_scale))
        cy, cx = (y0 + y1) / 2 + pad, (x0 + x1) / 2 + pad  # centre in padded coordinates
        # The official slice bounds in the padded frame; a stop past the end is cut there (numpy slicing), a
        # start before 0 (a box centre far outside the frame) is clamped.
        r0 = max(int(cy - s), 0)
        r1 = min(int(cy + s * (1 + 2 * crop_scale)), height + 2 * pad)
        c0 = max(int(cx - s * (1 + crop_scale)), 0)
        c1 = min(int(cx + s * (1 + crop_scale)), width + 2 * pad)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"frame {i}: face box {[x0, y0, x1, y1]} gives an empty crop")
        patch = np.full((r1 - r0, c1 - c0, 3), CROP_PAD_VALUE, dtype=np.uint8)
        # Copy the part of the real frame that overlaps the crop (frame pixel (r, c) is padded (r+pad, c+pad)).
        fr0, fr1 = max(r0 - pad, 0), min(r1 - pad, height)
        fc0, fc1 = max(c0 - pad, 0), min(c1 - pad, width)
        if fr1 > fr0 and fc1 > fc0:
            patch[fr0 + pad - r0 : fr1 + pad - r0, fc0 + pad - c0 : fc1 + pad - c0] = frame[fr0:fr1, fc0:fc1]
        out[i] = cv2.resize(patch, (CROP_SIZE, CROP_SIZE))
    return out
