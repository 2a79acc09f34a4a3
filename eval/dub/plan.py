"""The crop plan of a dub: which source frame each model frame shows, its crop window and boxes.

Built once the face track and the timeline are known (:func:`eval.dub.pipeline.dub`); the encoding pass
(:mod:`eval.dub.conditions`) and the paste pass (:mod:`eval.dub.paste`) both read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eval.dub.geometry import Window
from eval.dub.timeline import Timeline
from eval.dub.track import FaceTrack
from eval.dub.video import VideoInfo


@dataclass
class DubPlan:
    """Everything pass 2 and pass 3 need about the frames."""

    info: VideoInfo
    timeline: Timeline
    windows: list[Window]  # per source frame
    faces: np.ndarray  # gap-filled face boxes per source frame [N, 4]
    lower: np.ndarray  # gap-filled lower-face boxes per source frame [N, 4]
    references: list[int]  # source frames of the identity references
    size: tuple[int, int]
    # Per model frame [F, 4], crop pixels: the lower-face ("lower") and face ("face") boxes.
    crop_boxes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        order = self.timeline.order
        for name, boxes in (("lower", self.lower), ("face", self.faces)):
            self.crop_boxes[name] = np.stack([self.windows[s].to_crop(boxes[s], self.size) for s in order])


def pick_reference_frames(track: FaceTrack, timeline: Timeline, count: int) -> list[int]:
    """``count`` source frames with a detected face, evenly spread over the frames the output shows."""
    shown = np.unique(timeline.order)
    usable = shown[track.detected[shown]]
    if count <= 0 or usable.size == 0:
        return []
    picks = np.linspace(0, usable.size - 1, min(count, usable.size)).round().astype(int)
    return [int(usable[i]) for i in np.unique(picks)]
