"""Face tracks the way the official SyncNet pipeline builds them (``run_pipeline.py``: ``track_shot``).

Per shot, detections are chained greedily in frame order: a track starts at the first face left, and a
face joins it when it is at most ``num_failed_det`` frames after the track's last face and overlaps that
face with IoU above 0.5. A track is kept when it has more than ``min_track`` detections; its boxes are
linearly interpolated over the frames it skips, and it must be larger than ``min_face_size`` pixels on
average (the mean width or the mean height). Tracks are taken one after another until no face is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Detection", "FaceTrack", "iou", "track_shot"]


@dataclass(frozen=True)
class Detection:
    """One face found in one frame.

    Attributes:
        frame: Frame index in the 25 fps video.
        box: ``(x0, y0, x1, y1)`` pixels.
        score: Detector confidence.
    """

    frame: int
    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class FaceTrack:
    """A face followed through consecutive frames.

    Attributes:
        frames: int64 ``[F]`` consecutive frame indices.
        boxes: float64 ``[F, 4]`` xyxy boxes, interpolated where the detector missed.
    """

    frames: np.ndarray
    boxes: np.ndarray


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two xyxy boxes (no +1 pixel convention, as the official code)."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def track_shot(
    shot: list[list[Detection]],
    min_track: int = 100,
    num_failed_det: int = 25,
    min_face_size: float = 100.0,
    iou_threshold: float = 0.5,
) -> list[FaceTrack]:
    """The official tracks of one shot.

    Args:
        shot: Per frame of the shot (in order), the faces detected in it. Consumed: the lists are emptied.
        min_track: A track needs more than this many detections.
        num_failed_det: Largest frame gap between consecutive detections of a track.
        min_face_size: The interpolated boxes' mean width or mean height must exceed this (pixels).
        iou_threshold: A face joins a track when its IoU with the track's last face exceeds this.

    Returns:
        The kept tracks, in the order they were formed.
    """
    tracks = []
    while True:
        track: list[Detection] = []
        for faces in shot:
            # The official loop is a for-loop over the very list it removes the taken face from, so the face
            # right after a taken one is not looked at in that pass; walking by index reproduces that.
            i = 0
            while i < len(faces):
                face = faces[i]
                if not track:
                    track.append(faces.pop(i))
                elif face.frame - track[-1].frame <= num_failed_det:
                    if iou(face.box, track[-1].box) > iou_threshold:
                        track.append(faces.pop(i))
                else:
                    break
                i += 1
        if not track:
            return tracks
        if len(track) <= min_track:
            continue
        frames = np.array([f.frame for f in track], np.int64)
        boxes = np.array([f.box for f in track], np.float64)
        every = np.arange(frames[0], frames[-1] + 1)
        filled = np.stack([np.interp(every, frames, boxes[:, k]) for k in range(4)], axis=1)
        if max(np.mean(filled[:, 2] - filled[:, 0]), np.mean(filled[:, 3] - filled[:, 1])) > min_face_size:
            tracks.append(FaceTrack(every, filled))
