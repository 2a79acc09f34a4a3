"""Per-frame face analysis with MediaPipe: every face box, and the dominant face's lower-face box.

Detection runs on a downscaled copy of the frame and boxes are scaled back to source pixels. The
lower-face box (the V2V mask source) spans from the bottom of the nose to below the chin and across
the jaw; it comes from face-mesh landmarks, or from the detector's keypoints when the mesh is off or
tracks another face.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import mediapipe as mp
import numpy as np

# Face-mesh landmark indices (MediaPipe's 468-point topology).
SUBNASALE = 2
CHIN = 152
_FACE_OVAL = sorted({i for edge in mp.solutions.face_mesh.FACEMESH_FACE_OVAL for i in edge})


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence the C++ side's stderr (MediaPipe's TFLite start-up chatter) for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


@dataclass
class FrameFaces:
    """Faces found in one frame.

    Attributes:
        boxes: ``[K, 4]`` float32 (x0, y0, x1, y1) source pixels, largest first.
        scores: ``[K]`` detection confidences.
        lower: ``[4]`` lower-face box of the dominant face (NaN when there is no face).
    """

    boxes: np.ndarray
    scores: np.ndarray
    lower: np.ndarray

    @property
    def count(self) -> int:
        """Number of faces."""
        return int(self.boxes.shape[0])


class FaceAnalyzer:
    """Stateful per-frame analyser (the face mesh tracks across consecutive frames of one video).

    Args:
        long_side: Frames are downscaled so that their longer side is at most this for analysis.
        min_confidence: Detection confidence threshold.
        use_mesh: Lower-face boxes from face-mesh landmarks.
        model_selection: MediaPipe detector: 0 short range (< 2 m), 1 full range.
    """

    def __init__(
        self, long_side: int = 640, min_confidence: float = 0.5, use_mesh: bool = True, model_selection: int = 1
    ):
        self.long_side = long_side
        with native_stderr_silenced():
            self.detector = mp.solutions.face_detection.FaceDetection(
                model_selection=model_selection, min_detection_confidence=min_confidence
            )
            self.mesh = (
                mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=False, max_num_faces=1, min_detection_confidence=min_confidence
                )
                if use_mesh
                else None
            )
            # The first call loads the TFLite models and prints their start-up notes; do it here, silenced.
            blank = np.zeros((64, 64, 3), np.uint8)
            self.detector.process(blank)
            if self.mesh is not None:
                self.mesh.process(blank)
        self._mesh_found_a_face = False

    def close(self) -> None:
        """Release MediaPipe graphs."""
        self.detector.close()
        if self.mesh is not None:
            self.mesh.close()

    def __enter__(self) -> FaceAnalyzer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, image: np.ndarray, source_hw: tuple[int, int] | None = None) -> FrameFaces:
        """Analyse one upright RGB frame.

        Args:
            image: ``[H, W, 3]`` uint8; either the source frame (downscaled here) or, with ``source_hw``,
                a frame already downscaled by :func:`analysis_frame`.
            source_hw: Source ``(height, width)``; boxes are returned in source pixels.
        """
        if source_hw is None:
            h, w = image.shape[:2]
            small = analysis_frame(image, self.long_side)
        else:
            (h, w), small = source_hw, image
        found = self.detector.process(small).detections or []
        boxes, scores, keypoints = [], [], []
        for det in found:
            rb = det.location_data.relative_bounding_box
            x0, y0 = max(0.0, rb.xmin) * w, max(0.0, rb.ymin) * h
            x1, y1 = min(1.0, rb.xmin + rb.width) * w, min(1.0, rb.ymin + rb.height) * h
            boxes.append((x0, y0, x1, y1))
            scores.append(det.score[0] if det.score else 0.0)
            keypoints.append([(k.x * w, k.y * h) for k in det.location_data.relative_keypoints])
        if not boxes:
            if self.mesh is not None:
                self._mesh(small)  # keep the tracker's view of time consistent
            return FrameFaces(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.full(4, np.nan, np.float32))
        order = np.argsort([-(b[2] - b[0]) * (b[3] - b[1]) for b in boxes], kind="stable")
        boxes_arr = np.asarray(boxes, np.float32)[order]
        lower = self._lower_from_mesh(small, boxes_arr[0], w, h) if self.mesh is not None else None
        if lower is None:
            lower = lower_from_keypoints(boxes_arr[0], np.asarray(keypoints[order[0]], np.float32))
        return FrameFaces(boxes_arr, np.asarray(scores, np.float32)[order], lower)

    def _mesh(self, small: np.ndarray):
        """Face-mesh landmarks of a frame.

        Until the mesh has found its first face, the native stderr is silenced: on that first face MediaPipe's
        own face-mesh graph logs "Using NORM_RECT without IMAGE_DIMENSIONS is only supported for the square
        ROI" (its landmark projection is not given the image size, which the legacy solution API does not let
        a caller pass). Nothing a user can act on, and it used to land in the middle of the progress output.
        """
        if self._mesh_found_a_face:
            return self.mesh.process(small)
        with native_stderr_silenced():
            result = self.mesh.process(small)
        self._mesh_found_a_face = bool(result.multi_face_landmarks)
        return result

    def _lower_from_mesh(self, small: np.ndarray, dominant: np.ndarray, w: int, h: int) -> np.ndarray | None:
        result = self._mesh(small)
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([(p.x * w, p.y * h) for p in lm], np.float32)
        centre = pts.mean(axis=0)
        if not (dominant[0] <= centre[0] <= dominant[2] and dominant[1] <= centre[1] <= dominant[3]):
            return None  # the mesh follows another face than the dominant detection
        y0 = pts[SUBNASALE, 1]
        oval = pts[_FACE_OVAL]
        jaw = oval[oval[:, 1] >= y0]
        if jaw.shape[0] < 2:
            return None
        y1 = pts[CHIN, 1]
        margin = 0.05 * (y1 - y0)
        return np.array([jaw[:, 0].min(), y0, jaw[:, 0].max(), min(float(h), y1 + margin)], dtype=np.float32).clip(
            0, [w, h, w, h]
        )


def analysis_frame(image: np.ndarray, long_side: int) -> np.ndarray:
    """Downscale ``[H, W, 3]`` so its longer side is at most ``long_side`` (area averaging)."""
    h, w = image.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale == 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def lower_from_keypoints(box: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Lower-face box from a detection box and its keypoints (eyes, nose tip, mouth, ears).

    From just below the nose tip (a quarter of the way to the mouth) to below the chin (the box
    bottom plus 10% of its height), across the box.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    nose_y, mouth_y = float(keypoints[2, 1]), float(keypoints[3, 1])
    top = nose_y + 0.25 * max(0.0, mouth_y - nose_y)
    bottom = y1 + 0.1 * (y1 - y0)
    return np.array([x0, top, x1, bottom], dtype=np.float32)
