"""MediaPipe face-mesh landmarks per frame, and the landmark distances M-LMD and F-LMD.

Landmarks come from the face mesh that :class:`data_prep.faces.FaceAnalyzer` loads (the repository's one
MediaPipe set-up: 468-point topology, tracking across the frames of one video, analysis on a copy whose
longer side is at most 640 px, coordinates mapped back to source pixels).

LMD (Chen et al. 2018/2019, "lip movements generation at a glance" / ATVGnet): the mean Euclidean distance
between corresponding landmarks of the generated and the ground-truth frame, averaged over landmarks and
then over frames. Index sets on the MediaPipe mesh:

- M-LMD (mouth): the 40 lip landmarks of ``FACEMESH_LIPS`` (outer and inner lip contours).
- F-LMD (full face): all 468 mesh landmarks.

Pixel normalisation: coordinates are expressed as if each video were resized to 256×256 (``x · 256 / W``,
``y · 256 / H``), the resolution talking-head benchmarks report LMD at, so values do not depend on the
output resolution. No alignment is applied (head motion counts). Frames where either video has no face
are left out, and their count is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import mediapipe as mp
import numpy as np

from data_prep.faces import FaceAnalyzer, analysis_frame
from eval.metrics.video import as_video

__all__ = [
    "FACE_INDICES",
    "LMD_SIZE",
    "MOUTH_INDICES",
    "NUM_LANDMARKS",
    "LandmarkDistance",
    "face_landmarks",
    "landmark_distance",
]

NUM_LANDMARKS = 468
MOUTH_INDICES: tuple[int, ...] = tuple(sorted({i for edge in mp.solutions.face_mesh.FACEMESH_LIPS for i in edge}))
FACE_INDICES: tuple[int, ...] = tuple(range(NUM_LANDMARKS))
LMD_SIZE = 256


def face_landmarks(video: np.ndarray, long_side: int = 640, min_confidence: float = 0.5) -> np.ndarray:
    """Face-mesh landmarks of the dominant (first tracked) face in every frame.

    Args:
        video: ``[T, H, W, 3]`` RGB video (see :mod:`eval.metrics.video`).
        long_side: Frames are analysed downscaled to at most this longer side.
        min_confidence: Mesh detection confidence.

    Returns:
        float64 ``[T, 468, 2]`` (x, y) in source pixels; NaN rows for frames without a face.
    """
    frames = as_video(video)
    t, h, w = frames.shape[:3]
    out = np.full((t, NUM_LANDMARKS, 2), np.nan)
    with FaceAnalyzer(long_side=long_side, min_confidence=min_confidence, use_mesh=True) as analyzer:
        for i, frame in enumerate(frames):
            result = analyzer.mesh.process(analysis_frame(frame, long_side))
            if result.multi_face_landmarks:
                lm = result.multi_face_landmarks[0].landmark
                out[i] = [(p.x * w, p.y * h) for p in lm[:NUM_LANDMARKS]]
    return out


@dataclass(frozen=True)
class LandmarkDistance:
    """A landmark distance and how many frames it covers.

    Attributes:
        value: Mean distance in pixels of a 256×256 frame.
        frames_used: Frames where both videos had a face.
        frames_total: Frames compared.
    """

    value: float
    frames_used: int
    frames_total: int


def landmark_distance(
    generated: np.ndarray,
    reference: np.ndarray,
    indices: tuple[int, ...] | list[int],
    generated_hw: tuple[int, int],
    reference_hw: tuple[int, int],
) -> LandmarkDistance:
    """LMD between two landmark tracks on an index set (see the module docstring).

    Args:
        generated: ``[T, 468, 2]`` landmarks (NaN for frames without a face) of frames of size ``generated_hw``.
        reference: ``[T, 468, 2]`` landmarks of frames of size ``reference_hw``.
        indices: Landmarks to compare (:data:`MOUTH_INDICES` for M-LMD, :data:`FACE_INDICES` for F-LMD).
        generated_hw: ``(height, width)`` of the generated frames.
        reference_hw: ``(height, width)`` of the reference frames.

    Returns:
        The :class:`LandmarkDistance`.

    Raises:
        ValueError: Shapes differ, indices are out of range, or no frame has a face in both videos.
    """
    gen, ref = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    if gen.ndim != 3 or gen.shape[2] != 2 or gen.shape != ref.shape:
        raise ValueError(
            f"landmarks must be two [T, L, 2] arrays of one shape, got {list(gen.shape)} and {list(ref.shape)}"
        )
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= gen.shape[1]:
        raise ValueError(f"indices must be non-empty and in [0, {gen.shape[1]}), got {idx.min() if idx.size else []}..")
    for name, hw in (("generated_hw", generated_hw), ("reference_hw", reference_hw)):
        if len(hw) != 2 or min(hw) <= 0:
            raise ValueError(f"{name} must be a positive (height, width), got {hw}")
    scale_g = np.array([LMD_SIZE / generated_hw[1], LMD_SIZE / generated_hw[0]])
    scale_r = np.array([LMD_SIZE / reference_hw[1], LMD_SIZE / reference_hw[0]])
    g, r = gen[:, idx] * scale_g, ref[:, idx] * scale_r
    valid = np.isfinite(g).all(axis=(1, 2)) & np.isfinite(r).all(axis=(1, 2))
    if not valid.any():
        raise ValueError(f"no frame has a face in both videos ({gen.shape[0]} frames compared)")
    per_frame = np.linalg.norm(g[valid] - r[valid], axis=2).mean(axis=1)
    return LandmarkDistance(float(per_frame.mean()), int(valid.sum()), int(gen.shape[0]))
