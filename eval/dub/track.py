"""Face tracking of the source video and the face-centred crop window of every frame.

One pass of data_prep's face analysis (:class:`data_prep.faces.FaceAnalyzer`: MediaPipe detection and face
mesh, on a downscaled copy of each frame) gives the dominant face box and lower-face box per frame. Frames
where no face was found take boxes interpolated from their neighbours; the crop window follows the face
box's centre and size, median-filtered against detector outliers and smoothed with a Gaussian over
``smooth_s`` seconds so that the crop does not shake. Windows are square in model pixels (``size``'s aspect),
``crop_scale`` times the face box's side, and even-aligned in source pixels so that 4:2:0 chroma rows and
columns line up with them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from data_prep.faces import FaceAnalyzer, native_stderr_silenced
from eval.dub.background import Prefetch
from eval.dub.geometry import Window
from eval.dub.video import DubInputError, FrameIndex, VideoInfo

log = logging.getLogger(__name__)


@dataclass
class FaceTrack:
    """Per-frame face analysis of the frames the dub uses (upright source pixels, ``N`` frames).

    Attributes:
        index: Timestamps and keyframes of the frames.
        boxes: Dominant face box ``[N, 4]`` (x0, y0, x1, y1); NaN where none was found.
        lower: Its lower-face box ``[N, 4]``; NaN where none was found.
        analysed: ``[N]`` bool: the frames the analyser looked at (``None``: all of them); the others have NaN
            boxes that :func:`fill_missing` interpolates.
    """

    index: FrameIndex
    boxes: np.ndarray
    lower: np.ndarray
    analysed: np.ndarray | None = None

    @property
    def detected(self) -> np.ndarray:
        """``[N]`` bool: a face was found in the frame."""
        return np.isfinite(self.boxes).all(axis=1) & np.isfinite(self.lower).all(axis=1)

    @property
    def looked(self) -> np.ndarray:
        """``[N]`` bool: the frame was analysed."""
        return np.ones(len(self.boxes), bool) if self.analysed is None else self.analysed


def track_faces(
    info: VideoInfo, until_s: float, long_side: int = 640, min_confidence: float = 0.5, stride: int = 1
) -> FaceTrack:
    """Decode the video once up to ``until_s`` and analyse the faces of every ``stride``-th frame.

    Args:
        info: The probed video.
        until_s: Frames after this time (from the first frame) are not needed; decoding stops there.
        long_side: Frames are downscaled to this longer side for the analysis (data_prep's default).
        min_confidence: Face detection threshold.
        stride: Analyse frames ``0, stride, 2·stride, …`` (every frame is still decoded and indexed). The
            crop windows are smoothed over ``smooth_s`` anyway, so boxes interpolated between analysed
            frames a few hundredths of a second apart cost nothing visible, and the analysis is the
            costliest step of this pass.

    Returns:
        The track, with every decoded frame's timestamp and keyframe flag.

    Raises:
        DubInputError: The video stops decoding.
    """
    up_h, up_w = info.upright_size
    pts, times, keys, boxes, lower, analysed = [], [], [], [], [], []
    missing = np.full(4, np.nan, np.float32)
    with (
        av.open(str(info.path), metadata_errors="ignore") as container,
        FaceAnalyzer(long_side, min_confidence) as analyzer,
        # Decoding and downscaling the next frames (a background thread) overlaps analysing the current one.
        Prefetch(_analysis_frames(container, info, until_s, long_side, stride), depth=8, name="dub-faces") as frames,
    ):
        try:
            for frame_pts, t, key, image in frames:
                if image is not None:
                    with native_stderr_silenced():
                        found = analyzer(image, source_hw=(up_h, up_w))
                pts.append(frame_pts)
                times.append(t)
                keys.append(key)
                analysed.append(image is not None)
                boxes.append(found.boxes[0] if image is not None and found.count else missing)
                lower.append(found.lower if image is not None else missing)
        except (av.error.FFmpegError, ValueError) as err:
            raise DubInputError(f"video={info.path}: damaged at frame {len(times)}: {err}") from err
    index = FrameIndex(pts=pts, times=np.asarray(times, np.float64), keyframes=np.asarray(keys, bool))
    return FaceTrack(
        index,
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(lower, np.float32).reshape(-1, 4),
        np.asarray(analysed, bool),
    )


def _analysis_frames(
    container: av.container.InputContainer, info: VideoInfo, until_s: float, long_side: int, stride: int
) -> Iterator[tuple[int | None, float, bool, np.ndarray | None]]:
    """``(pts, seconds from the first frame, keyframe, upright RGB for the analyser or None)`` of each frame.

    Every ``stride``-th frame is downscaled to ``long_side`` for the analyser; decoding stops after ``until_s``.
    """
    k = info.quarter_turns
    scale = min(1.0, long_side / max(info.width, info.height))
    small_w, small_h = max(2, round(info.width * scale)), max(2, round(info.height * scale))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    t0 = None
    for count, frame in enumerate(container.decode(stream)):
        t = float(frame.time) if frame.time is not None else count / float(info.fps)
        t0 = t if t0 is None else t0
        if t - t0 > until_s:
            return
        image = None
        if count % max(1, stride) == 0:
            # swscale scales and converts in one step: the full-size RGB frame is never made.
            small = frame.reformat(width=small_w, height=small_h, format="rgb24", interpolation="AREA").to_ndarray()
            image = np.ascontiguousarray(np.rot90(small, k)) if k else small
        yield frame.pts, t - t0, bool(frame.key_frame), image


def missing_spans(times: np.ndarray, detected: np.ndarray, frame_s: float) -> list[tuple[float, float]]:
    """Time spans ``(start, end)`` in seconds of consecutive frames without a face."""
    spans, start = [], None
    for i, ok in enumerate(list(detected) + [True]):
        if not ok and start is None:
            start = i
        elif ok and start is not None:
            spans.append((float(times[start]), float(times[i - 1]) + frame_s))
            start = None
    return spans


def check_faces(track: FaceTrack, min_fraction: float, fps: float, path) -> None:
    """Refuse a video where a face is found in fewer than ``min_fraction`` of the analysed frames, naming the seconds.

    Raises:
        DubInputError: Too few frames with a face.
    """
    looked = track.looked
    detected = track.detected[looked]
    if detected.size and detected.mean() >= min_fraction:
        return
    step_s = float(np.median(np.diff(track.index.times[looked]))) if detected.size > 1 else 1.0 / fps
    spans = missing_spans(track.index.times[looked], detected, step_s)
    shown = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in spans[:6]) + (
        f" and {len(spans) - 6} more" if len(spans) > 6 else ""
    )
    raise DubInputError(
        f"video={path}: no face found in {1 - detected.mean():.0%} of the frames (seconds {shown}); "
        f"expected one visible face in at least {min_fraction:.0%} of them (min_face_fraction)"
    )


def fill_missing(boxes: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Boxes of frames without a face, linearly interpolated from the nearest frames with one (held at the ends).

    Args:
        boxes: ``[N, 4]``; rows of undetected frames are ignored.
        detected: ``[N]`` bool, at least one true.

    Returns:
        ``[N, 4]`` float64 without NaN.
    """
    frames = np.arange(len(boxes))
    known = np.flatnonzero(detected)
    return np.stack([np.interp(frames, known, boxes[known, c]) for c in range(4)], axis=1)


def smooth(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """A 5-frame median (drops single-frame detector outliers), then a Gaussian of ``sigma_frames`` ``[N]``."""
    out = median_filter(values, size=min(5, len(values)), mode="nearest") if len(values) > 2 else values
    return gaussian_filter1d(out, sigma_frames, mode="nearest") if sigma_frames > 0 else out


def crop_windows(
    boxes: np.ndarray, fps: float, aspect: float, crop_scale: float, smooth_s: float, frame_hw: tuple[int, int]
) -> list[Window]:
    """The face-centred crop window of every frame, in upright source pixels.

    Args:
        boxes: Gap-filled face boxes ``[N, 4]``.
        fps: Frame rate (for ``smooth_s``).
        aspect: Width over height of the model resolution.
        crop_scale: Window height over the face box's longer side.
        smooth_s: Standard deviation of the Gaussian smoothing in seconds (0: none).
        frame_hw: Upright ``(height, width)``; windows may reach past it (the crop is edge-padded there).

    Returns:
        ``N`` windows with even position and size.
    """
    sigma = smooth_s * fps
    cx = smooth((boxes[:, 0] + boxes[:, 2]) / 2, sigma)
    cy = smooth((boxes[:, 1] + boxes[:, 3]) / 2, sigma)
    side = smooth(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), sigma)
    height = np.maximum(2 * np.round(side * crop_scale / 2), 2)
    width = np.maximum(2 * np.round(height * aspect / 2), 2)
    x0 = 2 * np.round((cx - width / 2) / 2)
    y0 = 2 * np.round((cy - height / 2) / 2)
    limit = 4 * max(frame_hw)  # a window must stay near the frame whatever the boxes say
    return [
        Window(int(np.clip(x, -limit, limit)), int(np.clip(y, -limit, limit)), int(w), int(h))
        for x, y, w, h in zip(x0, y0, width, height)
    ]
