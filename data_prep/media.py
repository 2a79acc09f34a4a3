"""Media encoding for corpora and shard members: H.264 mp4 (optionally with AAC audio) and PCM wav.

Encodes are deterministic: the same frames give the same bytes, so reruns of data preparation write
identical shards.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np
import soundfile as sf

from trainer.atomic import atomic_path

# x264 output depends on its thread count, so it is fixed; and x264's macroblock-tree rate control gives
# different bitstreams for identical input from one call to the next (libx264 core 165), so it is off.
# No B-frames keeps decoding order equal to presentation order.
X264_OPTIONS = {"preset": "medium", "threads": "2", "x264-params": "mbtree=0", "bf": "0"}
AAC_FRAME = 1024


def fps_fraction(fps: float) -> Fraction:
    """Exact rational frame rate (29.97 → 30000/1001) for container time bases."""
    for den in (1, 1001):
        num = fps * den
        if abs(num - round(num)) < 1e-6 * den:
            return Fraction(round(num), den)
    return Fraction(fps).limit_denominator(100000)


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"H.264 with yuv420p needs even sizes, got {frames.shape[2]}x{frames.shape[1]}")


def rgb_to_i420(frame: np.ndarray) -> np.ndarray:
    """An RGB frame ``[H, W, 3]`` (even sides) as planar YUV 4:2:0 ``[H·3/2, W]``: Y, then U, then V.

    OpenCV's conversion is BT.601 limited range like swscale's (the two differ by rounding, under one level on
    average) and about ten times faster; it is also half the memory of RGB, which is why data_prep holds
    buffered frames this way.
    """
    import cv2  # OpenCV is in the data extra: a training node imports this module (mp4 writing) without it

    return cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)


def i420_to_rgb(frame: np.ndarray) -> np.ndarray:
    """Planar YUV 4:2:0 ``[H·3/2, W]`` back to RGB ``[H, W, 3]``."""
    import cv2  # the data extra, as in rgb_to_i420

    return cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420)


def _encode(
    target: str | BinaryIO,
    frames: Iterable[np.ndarray],
    size: tuple[int, int],
    fps: float,
    crf: int,
    audio: np.ndarray | None,
    sample_rate: int | None,
) -> None:
    """Encode frames given as RGB ``[H, W, 3]`` or planar YUV 4:2:0 ``[H·3/2, W]`` (``size`` = ``(H, W)``)."""
    height, width = size
    rate = fps_fraction(fps)
    with av.open(target, mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": str(int(crf)), **X264_OPTIONS}
        # Frames carry their own time base: the muxer rewrites the streams' time bases on the first packet.
        video_tb = 1 / rate
        video.time_base = video_tb
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate, layout="mono")
            astream.time_base = Fraction(1, sample_rate)
        for i, frame in enumerate(frames):
            planar = frame if frame.ndim == 2 else rgb_to_i420(frame)
            if planar.shape != (height * 3 // 2, width):
                raise ValueError(f"frame {i} is {list(frame.shape)}, the video is {width}x{height}")
            vf = av.VideoFrame.from_ndarray(planar, format="yuv420p")
            vf.pts, vf.time_base = i, video_tb
            container.mux(video.encode(vf))
        container.mux(video.encode(None))
        if astream is not None:
            samples = np.ascontiguousarray(audio, dtype=np.float32)
            for start in range(0, samples.shape[0], AAC_FRAME):
                af = av.AudioFrame.from_ndarray(samples[None, start : start + AAC_FRAME], format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = sample_rate, start, Fraction(1, sample_rate)
                container.mux(astream.encode(af))
            container.mux(astream.encode(None))


def encode_mp4_i420(frames: Sequence[np.ndarray], size: tuple[int, int], fps: float, crf: int = 18) -> bytes:
    """Encode planar YUV 4:2:0 frames (:func:`rgb_to_i420`) as an mp4 held in memory, without a conversion.

    Args:
        frames: ``[H·3/2, W]`` uint8 each.
        size: ``(H, W)``, both even.
        fps: Frame rate.
        crf: x264 constant rate factor.

    Returns:
        The file's bytes.
    """
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"H.264 with yuv420p needs even sizes, got {size[1]}x{size[0]}")
    buf = io.BytesIO()
    _encode(buf, frames, size, fps, crf, None, None)
    return buf.getvalue()


def encode_mp4(
    frames: np.ndarray, fps: float, crf: int = 18, audio: np.ndarray | None = None, sample_rate: int | None = None
) -> bytes:
    """Encode RGB frames (and optionally mono audio) as an mp4 held in memory.

    Args:
        frames: ``[F, H, W, 3]`` uint8 with even ``H`` and ``W``.
        fps: Frame rate (exact for 23.976/29.97/59.94 and integers).
        crf: x264 constant rate factor (18 is visually lossless).
        audio: Optional ``[S]`` float32 in [−1, 1], muxed as AAC.
        sample_rate: Audio rate in Hz (required with ``audio``).

    Returns:
        The file's bytes; every frame decodes back, in order.
    """
    _check_frames(frames)
    buf = io.BytesIO()
    _encode(buf, frames, frames.shape[1:3], fps, crf, audio, sample_rate)
    return buf.getvalue()


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    crf: int = 18,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
) -> None:
    """:func:`encode_mp4` into a file, atomically (temporary file, then rename)."""
    _check_frames(frames)
    with atomic_path(path) as tmp:
        _encode(str(tmp), frames, frames.shape[1:3], fps, crf, audio, sample_rate)


def encode_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """Encode mono float audio in [−1, 1] as 16-bit PCM wav bytes.

    Samples become ``round(x · 32768)`` clipped to int16, ffmpeg's float → s16 conversion (libsndfile would
    scale by 32767), so stored audio equals ``ffmpeg -ac 1 -ar 16000``'s PCM and reads back as ``x / 32768``.
    """
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {list(audio.shape)}")
    pcm = np.clip(np.rint(np.asarray(audio, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, int(sample_rate), subtype="PCM_16", format="WAV")
    return buf.getvalue()


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """:func:`encode_wav` into a file, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_wav(audio, sample_rate))


def encode_npy(array: np.ndarray) -> bytes:
    """``np.save`` into bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()
