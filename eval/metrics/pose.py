"""Head pose from face-mesh landmarks, and AnyExpress's pose diversity score ΔP.

Pose: ``cv2.solvePnP`` (iterative) of six mesh landmarks against the generic six-point 3-D head model
widely used for landmark-based head pose (nose tip, chin, outer eye corners, mouth corners; units
arbitrary), written in the camera convention (x right, y down, z away from the camera) so that a
frontal face has the identity rotation. The camera is a pinhole with focal length = frame width, the
principal point at the frame centre and no distortion. The rotation ``R = Rz(roll) · Ry(yaw) · Rx(pitch)``
is split into Euler angles in degrees: pitch about x (nodding), yaw about y (turning), roll about z
(tilting).

ΔP (AnyExpress, appendix A.2.1, "Face Perspective Diversity Score"): with ``P_i = (yaw_i, pitch_i, roll_i)``
for frames ``i = 1 … N``, ``ΔP_i = (|Δyaw_i| + |Δpitch_i| + |Δroll_i|) / 3`` for consecutive frames and
``ΔP = 1/(N − 1) · Σ ΔP_i``: the mean absolute per-frame change of the three angles, in degrees per frame.
Pairs where either frame has no face are left out of the mean.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["MODEL_POINTS", "POSE_LANDMARKS", "delta_p", "euler_from_rotation", "head_pose", "rotation_from_euler"]

# Mesh indices: nose tip, chin, outer corner of the eye on the image's left (subject's right), outer corner
# of the other eye, mouth corner on the image's left, mouth corner on the image's right.
POSE_LANDMARKS: tuple[int, ...] = (1, 152, 33, 263, 61, 291)
MODEL_POINTS = np.array(
    [
        [0.0, 0.0, 0.0],
        [0.0, 330.0, 65.0],
        [-225.0, -170.0, 135.0],
        [225.0, -170.0, 135.0],
        [-150.0, 150.0, 125.0],
        [150.0, 150.0, 125.0],
    ]
)


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) · Ry(yaw) · Rx(pitch)`` for angles in degrees (the inverse of :func:`euler_from_rotation`)."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees of ``R = Rz(roll) · Ry(yaw) · Rx(pitch)`` (yaw in [-90, 90])."""
    r = np.asarray(rotation, np.float64)
    if r.shape != (3, 3):
        raise ValueError(f"rotation must be [3, 3], got {list(r.shape)}")
    yaw = math.atan2(-r[2, 0], math.hypot(r[0, 0], r[1, 0]))
    pitch = math.atan2(r[2, 1], r[2, 2])
    roll = math.atan2(r[1, 0], r[0, 0])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def head_pose(landmarks: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Per-frame head pose from face-mesh landmarks.

    Args:
        landmarks: ``[T, L, 2]`` pixel landmarks (MediaPipe mesh indices, ``L ≥ 292``; NaN rows: no face).
        frame_hw: ``(height, width)`` of the frames.

    Returns:
        float64 ``[T, 3]`` (yaw, pitch, roll) in degrees; NaN rows where there is no face or PnP fails.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[2] != 2 or lm.shape[1] <= max(POSE_LANDMARKS):
        raise ValueError(f"landmarks must be [T, L >= {max(POSE_LANDMARKS) + 1}, 2], got {list(lm.shape)}")
    h, w = frame_hw
    if h <= 0 or w <= 0:
        raise ValueError(f"frame_hw must be a positive (height, width), got {frame_hw}")
    camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], dtype=np.float64)
    out = np.full((lm.shape[0], 3), np.nan)
    for i, frame_lm in enumerate(lm):
        pts = frame_lm[list(POSE_LANDMARKS)]
        if not np.isfinite(pts).all():
            continue
        ok, rvec, _ = cv2.solvePnP(MODEL_POINTS, pts, camera, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
        if ok:
            out[i] = euler_from_rotation(cv2.Rodrigues(rvec)[0])
    return out


def delta_p(poses: np.ndarray) -> float:
    """AnyExpress's ΔP: mean over consecutive frame pairs of the mean absolute change of yaw, pitch and roll.

    Args:
        poses: ``[N, 3]`` (yaw, pitch, roll) in degrees, ``N ≥ 2``; NaN rows (no face) drop the pairs they are in.

    Returns:
        ΔP in degrees per frame.

    Raises:
        ValueError: Wrong shape, or no consecutive pair with both poses known.
    """
    p = np.asarray(poses, np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"poses must be [N, 3] (yaw, pitch, roll), got shape {list(p.shape)}")
    if p.shape[0] < 2:
        raise ValueError(f"ΔP needs at least 2 frames, got {p.shape[0]}")
    per_pair = np.abs(np.diff(p, axis=0)).mean(axis=1)  # ΔP_i = (Δyaw + Δpitch + Δroll) / 3
    valid = np.isfinite(per_pair)
    if not valid.any():
        raise ValueError(f"no consecutive pair of the {p.shape[0]} frames has a head pose in both")
    return float(per_pair[valid].mean())
