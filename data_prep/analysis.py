"""In-memory per-frame analysis of one video: scene cuts and faces, fed frame by frame as it decodes."""

from __future__ import annotations

import math
import time
from collections import defaultdict

import cv2
import numpy as np
from scenedetect.common import FrameTimecode
from scenedetect.detectors import ContentDetector

from data_prep.config import FaceConfig, SceneConfig
from data_prep.decode import Frame
from data_prep.faces import FaceAnalyzer, analysis_frame
from data_prep.segments import FaceTrack


class FrameAnalysis:
    """Accumulates what the scene and face stages learn about each frame.

    One area-averaged downscale of each frame serves both analyses; the scene detector reads a further
    integer-factor reduction of it, which is cheap. Either stage can be switched off.

    Args:
        scenes: Scene-cut settings.
        faces: Face settings.
        fps: Frame rate (for the scene detector's timecodes).
    """

    def __init__(self, scenes: SceneConfig, faces: FaceConfig, fps: float):
        self.scenes_cfg, self.faces_cfg, self.fps = scenes, faces, float(fps)
        self.scene = ContentDetector(threshold=scenes.threshold, min_scene_len=scenes.min_scene_len)
        self.analyzer = (
            FaceAnalyzer(faces.analysis_long_side, faces.min_detection_confidence, faces.use_mesh)
            if faces.enabled
            else None
        )
        self.times: list[float] = []
        self.boxes: list[np.ndarray] = []
        self.lowers: list[np.ndarray] = []
        self.second: list[float] = []
        self.cuts: set[int] = set()
        self.seconds: dict[str, float] = defaultdict(float)  # time spent per stage

    def close(self) -> None:
        """Release the face analyser's graphs."""
        if self.analyzer is not None:
            self.analyzer.close()

    def __enter__(self) -> FrameAnalysis:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.times)

    def add(self, frame: Frame) -> None:
        """Analyse the next frame (frames must arrive in order)."""
        t = time.perf_counter()
        h, w = frame.image.shape[:2]
        small = frame.small
        if small is None or max(small.shape[:2]) != min(max(h, w), self.faces_cfg.analysis_long_side):
            small = analysis_frame(frame.image, self.faces_cfg.analysis_long_side)
        self.seconds["downscale"] += time.perf_counter() - t
        self.times.append(frame.time_s)
        if self.scenes_cfg.enabled:
            t = time.perf_counter()
            k = max(1, math.ceil(small.shape[1] / self.scenes_cfg.analysis_width))
            tiny = small if k == 1 else cv2.resize(small, None, fx=1 / k, fy=1 / k, interpolation=cv2.INTER_AREA)
            for cut in self.scene.process_frame(FrameTimecode(frame.index, fps=self.fps), tiny[:, :, ::-1]):
                self.cuts.add(int(cut.frame_num))
            self.seconds["scenes"] += time.perf_counter() - t
        t = time.perf_counter()
        if self.analyzer is not None:
            found = self.analyzer(small, source_hw=(h, w))
            if found.count:
                area = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
                self.boxes.append(found.boxes[0])
                self.second.append(float(area[1] / area[0]) if found.count > 1 and area[0] > 0 else 0.0)
            else:
                self.boxes.append(np.full(4, np.nan, np.float32))
                self.second.append(0.0)
            self.lowers.append(found.lower)
        else:
            # Without face analysis the whole frame is the face region and its lower half the mask source.
            self.boxes.append(np.array([0, 0, w, h], np.float32))
            self.lowers.append(np.array([0, h / 2, w, h], np.float32))
            self.second.append(0.0)
        self.seconds["faces"] += time.perf_counter() - t

    def track(self) -> FaceTrack:
        """The face track of every frame analysed so far."""
        return FaceTrack(
            np.asarray(self.boxes, np.float32), np.asarray(self.lowers, np.float32), np.asarray(self.second)
        )
