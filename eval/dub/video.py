"""The source video of a dub: probing, and reading its frames in any order with bounded memory.

A dub reads the source three times (face analysis, crops, paste-back), always as decoded YUV frames in
their stored orientation: a 1080×1920 frame is 3 MB as 4:2:0 YUV and 6 MB as RGB, and only the few
pixels a step needs are ever converted. Frames are requested in output order, which ping-pong looping
runs backwards through the video; :class:`FrameReader` serves that from a window of at most
``cache_frames`` decoded frames, seeking to the keyframe before a backward window and decoding forward
from there, so memory never depends on the video's length.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class DubInputError(ValueError):
    """A dub input is unusable; the message names the file or key and says what was expected."""


@dataclass(frozen=True)
class VideoInfo:
    """What the dub needs to know about the source video before decoding it.

    Attributes:
        path: The file.
        width: Stored (coded) width.
        height: Stored height.
        rotation: Display rotation in degrees counter-clockwise (PyAV's ``frame.rotation``): the upright
            picture is ``np.rot90(stored, rotation // 90)``.
        fps: Frame rate of the output (the stream's average rate).
        pix_fmt: Decoded pixel format.
        colorspace: Colour matrix tag (``AVColorSpace``), kept on the output.
        color_range: Range tag (``AVColorRange``: 1 limited, 2 full, 0 unspecified).
        color_primaries: Primaries tag, kept on the output.
        color_trc: Transfer tag, kept on the output.
    """

    path: Path
    width: int
    height: int
    rotation: int
    fps: Fraction
    pix_fmt: str
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int

    @property
    def quarter_turns(self) -> int:
        """``rotation`` in quarter turns counter-clockwise, 0…3."""
        return int(round(self.rotation / 90.0)) % 4

    @property
    def upright_size(self) -> tuple[int, int]:
        """``(height, width)`` of the upright picture."""
        return (self.width, self.height) if self.quarter_turns % 2 else (self.height, self.width)


def probe_video(path: str | Path) -> VideoInfo:
    """Open the source video and read its first frame's geometry and colour tags.

    Raises:
        DubInputError: Missing file, not a media file, no video stream, no decodable frame, or a size the
            output encoder cannot keep (odd width or height).
    """
    path = Path(path)
    if not path.is_file():
        raise DubInputError(f"video={path}: no such file (expected a video with a visible face, e.g. an mp4)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise DubInputError(f"video={path}: not a readable media file ({err}); expected a video file") from err
    with container:
        if not container.streams.video:
            raise DubInputError(f"video={path}: has no video stream (expected a video with a visible face)")
        stream = container.streams.video[0]
        try:
            frame = next(container.decode(stream), None)
        except (av.error.FFmpegError, ValueError) as err:
            raise DubInputError(f"video={path}: its video stream does not decode ({err})") from err
        if frame is None:
            raise DubInputError(f"video={path}: its video stream has no frame")
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise DubInputError(f"video={path}: the video stream declares no frame rate")
        if frame.width % 2 or frame.height % 2:
            raise DubInputError(
                f"video={path}: {frame.width}x{frame.height} has an odd side; H.264 4:2:0 output needs even sizes"
            )
        return VideoInfo(
            path=path,
            width=frame.width,
            height=frame.height,
            rotation=int(frame.rotation or 0),
            fps=Fraction(rate),
            pix_fmt=frame.format.name,
            colorspace=int(frame.colorspace),
            color_range=int(frame.color_range),
            color_primaries=int(frame.color_primaries),
            color_trc=int(frame.color_trc),
        )


@dataclass
class FrameIndex:
    """Every decoded frame's timestamp, learned in the first pass over the video.

    Attributes:
        pts: Presentation timestamps in stream time base ``[N]`` (``None`` entries: the container gave none).
        times: Seconds from the first frame ``[N]``.
        keyframes: Whether each frame is a keyframe (a place a seek can land) ``[N]``.
    """

    pts: list[int | None]
    times: np.ndarray
    keyframes: np.ndarray

    def __len__(self) -> int:
        return len(self.pts)


def yuv_planes(frame: av.VideoFrame, copy: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 4:2:0 frame's Y ``[H, W]``, U and V ``[H/2, W/2]`` planes (line padding dropped).

    Frames of another pixel format are converted to ``yuv420p`` first (same colour matrix and range).

    Args:
        frame: A decoded frame.
        copy: Copies; else views of the frame's buffers, valid while the frame lives and not to be written
            (a decoder may still predict later frames from them): enough to cut a crop out of it.
    """
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        frame = frame.reformat(format="yuv420p")
    out = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        out.append(rows.copy() if copy else rows)
    return out[0], out[1], out[2]


def writable_copy(frame: av.VideoFrame) -> tuple[av.VideoFrame, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A new ``yuv420p`` frame with ``frame``'s pixels, and writable views of its Y, U and V planes.

    The decoded frame itself is never written: the decoder may still predict later frames from it. One copy
    of the pixels is made (what :func:`yuv_planes` then :func:`frame_from_planes` do in two).
    """
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        copy = frame.reformat(format="yuv420p")  # a new frame already
    else:
        copy = av.VideoFrame(frame.width, frame.height, "yuv420p")
        for src, dst in zip(frame.planes, copy.planes):
            rows = np.frombuffer(src, np.uint8).reshape(src.height, src.line_size)
            np.frombuffer(dst, np.uint8).reshape(dst.height, dst.line_size)[:, : dst.width] = rows[:, : src.width]
    views = [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in copy.planes]
    return copy, (views[0], views[1], views[2])


def frame_from_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    """A new ``yuv420p`` frame holding the three planes."""
    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
    for plane, data in zip(frame.planes, (y, u, v)):
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        rows[:, : plane.width] = data
    return frame


class FrameReader:
    """Decoded source frames in any requested order, holding at most ``cache_frames`` of them.

    Forward requests continue the running decoder; a request behind the window starts a new window that
    ends at the requested frame, found by seeking to the last keyframe before its start and decoding
    forward (a backward run is then served from the window until it leaves it).

    Args:
        info: The probed video.
        index: Timestamps and keyframes from the first pass.
        cache_frames: Decoded frames kept (the window); at least 1.
    """

    def __init__(self, info: VideoInfo, index: FrameIndex, cache_frames: int):
        self.info = info
        self.index = index
        self.cache_frames = max(1, int(cache_frames))
        self.window: collections.deque[tuple[int, av.VideoFrame]] = collections.deque()
        self.container: av.container.InputContainer | None = None
        self.decoded: Iterator[av.VideoFrame] | None = None
        self.next_index = 0  # index of the frame the running decoder yields next
        self.seeks = 0
        self._pts_to_index = {p: i for i, p in enumerate(index.pts) if p is not None}

    def close(self) -> None:
        """Close the file and drop the window."""
        self.window.clear()
        self.decoded = None
        if self.container is not None:
            self.container.close()
            self.container = None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frame(self, i: int) -> av.VideoFrame:
        """Frame ``i``.

        Raises:
            IndexError: ``i`` is outside the indexed frames.
            DubInputError: The file stops decoding before frame ``i`` (changed since it was indexed).
        """
        if not 0 <= i < len(self.index):
            raise IndexError(f"frame {i} of a {len(self.index)}-frame video")
        if self.window and self.window[0][0] <= i <= self.window[-1][0]:
            return self.window[i - self.window[0][0]][1]
        if self.decoded is None or i < self.next_index:
            self._restart(max(0, i - self.cache_frames + 1))
        while self.next_index <= i:
            self._advance()
        return self.window[i - self.window[0][0]][1]

    def _open(self) -> None:
        if self.container is None:
            self.container = av.open(str(self.info.path), metadata_errors="ignore")
            self.container.streams.video[0].thread_type = "AUTO"

    def _restart(self, start: int) -> None:
        """Position the decoder so that it yields frame ``start`` next (seek to the keyframe before it)."""
        self._open()
        stream = self.container.streams.video[0]
        key = (
            int(np.flatnonzero(self.index.keyframes[: start + 1])[-1]) if self.index.keyframes[: start + 1].any() else 0
        )
        self.window.clear()
        pts = self.index.pts[key]
        if key == 0 or pts is None:
            self.container.seek(0, stream=stream, backward=True, any_frame=False)
            key = 0
        else:
            self.container.seek(pts, stream=stream, backward=True, any_frame=False)
        self.seeks += 1
        self.decoded = iter(self.container.decode(stream))
        self.next_index = key
        self._skip_to(key, start)

    def _skip_to(self, key: int, start: int) -> None:
        """Decode from keyframe ``key`` until frame ``start`` is next; frames before it are dropped."""
        while self.next_index < start:
            self._advance(keep=False)

    def _advance(self, keep: bool = True) -> None:
        """Decode the next frame into the window (dropping the oldest beyond ``cache_frames``)."""
        while True:
            try:
                frame = next(self.decoded)
            except StopIteration:
                raise DubInputError(
                    f"video={self.info.path}: decoding stopped at frame {self.next_index} of {len(self.index)} "
                    "(the file changed or is damaged)"
                ) from None
            except (av.error.FFmpegError, ValueError) as err:
                raise DubInputError(f"video={self.info.path}: damaged at frame {self.next_index}: {err}") from err
            found = self._pts_to_index.get(frame.pts, self.next_index) if frame.pts is not None else self.next_index
            if found < self.next_index:
                continue  # a frame from before the keyframe a seek landed on (open-GOP leading picture)
            if found > self.next_index:
                raise DubInputError(
                    f"video={self.info.path}: frame {self.next_index} did not decode after a seek (got {found})"
                )
            break
        self.next_index += 1
        if keep:
            self.window.append((found, frame))
            while len(self.window) > self.cache_frames:
                self.window.popleft()
