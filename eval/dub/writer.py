"""The dubbed mp4: H.264 frames as they are pasted, the new speech as AAC, interleaved, at the source's geometry.

The video stream keeps the source's stored size, frame rate, display rotation and colour tags; the speech
keeps its own sample rate and (up to stereo) channels, cut to the output's length. Audio packets are
written as the video reaches their time, so players can stream the file. The caller writes into a
temporary path and renames it (:func:`trainer.atomic.atomic_path`).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from eval.dub.video import DubInputError, VideoInfo

_AAC_BITRATE = {1: 128_000, 2: 192_000}


class SpeechTrack:
    """The speech file's first audio stream as float planar frames at its own rate, cut after ``seconds``.

    Args:
        path: Any file FFmpeg reads with an audio stream.
        seconds: Length to keep.

    Attributes:
        rate: Its sample rate.
        layout: ``mono`` or ``stereo`` (more channels are downmixed to stereo by libswresample).

    Raises:
        DubInputError: No audio stream.
    """

    def __init__(self, path: str | Path, seconds: float):
        self.path = Path(path)
        self.container = av.open(str(path), metadata_errors="ignore")
        if not self.container.streams.audio:
            self.container.close()
            raise DubInputError(f"audio={path}: has no audio stream (expected a file with speech)")
        self.stream = self.container.streams.audio[0]
        self.rate = int(self.stream.rate)
        self.layout = "mono" if self.stream.channels == 1 else "stereo"
        self.total = int(round(seconds * self.rate))

    def frames(self) -> Iterator[av.AudioFrame]:
        """Frames with ``pts`` in samples from 0, ``total`` samples in all (fewer if the file is shorter)."""
        resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        done = 0
        try:
            decoded = (frame for packet in self.container.demux(self.stream) for frame in packet.decode())
            for frame in [*decoded, None]:
                for out in resampler.resample(frame):
                    if done >= self.total:
                        return
                    data = out.to_ndarray()[:, : self.total - done]
                    chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=self.layout)
                    chunk.sample_rate, chunk.pts, chunk.time_base = self.rate, done, Fraction(1, self.rate)
                    done += data.shape[1]
                    yield chunk
        except (av.error.FFmpegError, ValueError) as err:
            raise DubInputError(f"audio={self.path}: its audio stream does not decode: {err}") from err

    def close(self) -> None:
        """Close the file."""
        self.container.close()


class DubWriter:
    """Writes the output mp4 frame by frame.

    Args:
        path: File to write (a temporary path; the caller renames it).
        info: The source video (size, rate, rotation, colour tags are kept).
        speech: The speech file.
        speech_s: Seconds of speech to mux.
        crf: x264 constant rate factor.
        preset: x264 preset.
        x264_params: x264 options on top of the preset (``key=value:…``; empty: none).
    """

    def __init__(
        self,
        path: str | Path,
        info: VideoInfo,
        speech: str | Path,
        speech_s: float,
        crf: int,
        preset: str,
        x264_params: str = "",
    ):
        self.info = info
        self.track = SpeechTrack(speech, speech_s)  # first: it may refuse the file
        self.speech = self.track.frames()
        self.container = av.open(str(path), mode="w", format="mp4")
        video = self.container.add_stream("libx264", rate=info.fps)
        video.width, video.height, video.pix_fmt = info.width, info.height, "yuv420p"
        video.options = {"crf": str(int(crf)), "preset": preset}
        if x264_params:
            video.options = {**video.options, "x264-params": x264_params}
        ctx = video.codec_context
        # x264's frame threads (lavc's default here is slices): each thread encodes a whole frame, which keeps
        # both cores busier than two slices of one frame do, at the cost of a few frames of latency.
        ctx.thread_type = "FRAME"
        ctx.colorspace, ctx.color_range = info.colorspace, info.color_range
        ctx.color_primaries, ctx.color_trc = info.color_primaries, info.color_trc
        if info.rotation:
            video.set_display_rotation(info.rotation)
        # Frames carry their own time base: the muxer rewrites the stream's when it writes the header.
        self.frame_time_base = Fraction(1) / info.fps
        video.time_base = self.frame_time_base
        self.video = video
        self.audio = self.container.add_stream("aac", rate=self.track.rate, layout=self.track.layout)
        self.audio.bit_rate = _AAC_BITRATE[1 if self.track.layout == "mono" else 2]
        self.audio.time_base = Fraction(1, self.track.rate)
        self.audio_rate = self.track.rate
        self.audio_done = 0  # samples muxed
        self.frames = 0

    def add(self, frame: av.VideoFrame) -> None:
        """Encode the next video frame (then the speech up to its end time)."""
        frame.pts, frame.time_base = self.frames, self.frame_time_base
        frame.colorspace, frame.color_range = self.info.colorspace, self.info.color_range
        self.container.mux(self.video.encode(frame))
        self.frames += 1
        self._audio_until(self.frames / float(self.info.fps))

    def _audio_until(self, seconds: float | None) -> None:
        while seconds is None or self.audio_done < seconds * self.audio_rate:
            chunk = next(self.speech, None)
            if chunk is None:
                return
            self.audio_done += chunk.samples
            self.container.mux(self.audio.encode(chunk))

    def finish(self) -> None:
        """Flush both encoders and close the file."""
        self.container.mux(self.video.encode(None))
        self._audio_until(None)
        self.container.mux(self.audio.encode(None))
        self.container.close()
        self.track.close()

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        self.track.close()
        self.container.close()
