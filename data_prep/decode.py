"""One decoding pass over a source video: upright RGB frames with timestamps, and its audio at 16 kHz mono.

Video and audio packets are demuxed together, so the file is read once. Frames are yielded as they are
decoded (callers keep only what they need); the audio goes through the project's resampler
(:func:`data_prep.audio.mono_resampler`: ffmpeg's ``-ac 1`` downmix, libswresample to 16 kHz), is
accumulated and aligned so that sample 0 is the time of the first video frame.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from data_prep.audio import AUDIO_RATE, mono_resampler
from data_prep.faces import analysis_frame
from data_prep.probe import TRUNCATED

DECODE_ERROR = "decode_error"


@dataclass
class Frame:
    """A decoded video frame.

    Attributes:
        index: Position in decoding (presentation) order, from 0.
        time_s: Presentation time relative to the first frame.
        image: ``[H, W, 3]`` uint8 RGB, rotated upright per the stream's display matrix.
        small: The frame downscaled for analysis (longer side ``analysis_long_side``), when requested.
    """

    index: int
    time_s: float
    image: np.ndarray
    small: np.ndarray | None = None


class DecodeError(Exception):
    """Decoding failed; ``reason`` is a ledger reason code."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, as PyAV reports it), like ffmpeg's autorotate."""
    k = (int(round(rotation / 90.0)) % 4) if rotation else 0
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


class SourceDecoder:
    """Decode a video file once.

    Iterate :meth:`frames`; after the iteration, :attr:`audio` holds the whole audio track.

    Args:
        path: The video file.
        expected_frames: Frames the probe counted; far fewer decoded frames mean a truncated file.
        analysis_long_side: Also hand out each frame downscaled to this longer side (computed on the
            decoding thread, where it overlaps the caller's work).
    """

    def __init__(self, path: str | Path, expected_frames: int = 0, analysis_long_side: int | None = None):
        self.path = Path(path)
        self.expected_frames = expected_frames
        self.analysis_long_side = analysis_long_side
        self.audio: np.ndarray | None = None
        self.num_frames = 0
        self._chunks: list[np.ndarray] = []
        self._audio_start: float | None = None
        self._video_start: float | None = None

    def frames(self, prefetch: int = 8) -> Iterator[Frame]:
        """Yield upright frames in presentation order.

        Args:
            prefetch: Frames decoded ahead by a background thread, so that decoding overlaps the
                caller's analysis (the decoder releases the GIL); 0 decodes in the calling thread.

        Raises:
            DecodeError: ``decode_error`` when the bitstream is damaged, ``truncated`` when the file
                ends long before the frames the container announced.
        """
        if prefetch <= 0:
            yield from self._decode()
            return
        items: queue.Queue = queue.Queue(maxsize=prefetch)
        stop = threading.Event()
        done = object()

        def work() -> None:
            try:
                for frame in self._decode():
                    while not stop.is_set():
                        try:
                            items.put(frame, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                items.put(done)
            except BaseException as err:  # handed to the consumer, which re-raises it
                items.put(err)

        worker = threading.Thread(target=work, name=f"decode:{self.path.name}", daemon=True)
        worker.start()
        try:
            while True:
                item = items.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    def _decode(self) -> Iterator[Frame]:
        chunks = self._chunks
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except av.error.FFmpegError as err:
            raise DecodeError(DECODE_ERROR, f"{self.path}: cannot open for decoding: {err}") from err
        with container:
            vstream = container.streams.video[0]
            astream = container.streams.audio[0] if container.streams.audio else None
            vstream.thread_type = "AUTO"
            resampler = mono_resampler(AUDIO_RATE) if astream else None
            streams = [vstream] + ([astream] if astream is not None else [])
            index = 0
            try:
                for packet in container.demux(*streams):
                    if packet.stream.type == "video":
                        for frame in packet.decode():
                            t = frame.time if frame.time is not None else index / float(vstream.average_rate or 25)
                            if self._video_start is None:
                                self._video_start = t
                            image = upright(frame.to_ndarray(format="rgb24"), frame.rotation)
                            small = analysis_frame(image, self.analysis_long_side) if self.analysis_long_side else None
                            yield Frame(index=index, time_s=t - self._video_start, image=image, small=small)
                            index += 1
                    else:
                        for frame in packet.decode():
                            if self._audio_start is None and frame.time is not None:
                                self._audio_start = frame.time
                            for out in resampler.resample(frame):
                                chunks.append(out.to_ndarray().reshape(-1))
                if resampler is not None:
                    for out in resampler.resample(None):
                        chunks.append(out.to_ndarray().reshape(-1))
            except (av.error.FFmpegError, ValueError) as err:
                raise DecodeError(DECODE_ERROR, f"{self.path}: damaged stream after {index} frames: {err}") from err
        self.num_frames = index
        if index == 0:
            raise DecodeError(DECODE_ERROR, f"{self.path}: no frame could be decoded")
        if self.expected_frames and index < 0.98 * self.expected_frames - 1:
            raise DecodeError(TRUNCATED, f"{self.path}: decoded {index} of {self.expected_frames} announced frames")
        self.audio = self.audio_so_far()

    def audio_so_far(self) -> np.ndarray:
        """The audio decoded so far ``[S]`` float32 at 16 kHz; sample 0 is the instant of the first video frame."""
        chunks = list(self._chunks)  # the decoding thread may be appending
        audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        shift = round(((self._audio_start or 0.0) - (self._video_start or 0.0)) * AUDIO_RATE)
        if shift > 0:
            audio = np.concatenate([np.zeros(shift, np.float32), audio])
        elif shift < 0:
            audio = audio[-shift:]
        return audio
