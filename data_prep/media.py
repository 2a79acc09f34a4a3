"""In-memory media encoding for shard members: H.264 mp4 video and 16-bit PCM wav audio."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import soundfile as sf


def fps_fraction(fps: float) -> Fraction:
    """Exact rational frame rate (29.97 → 30000/1001) for container time bases."""
    for den in (1, 1001):
        num = fps * den
        if abs(num - round(num)) < 1e-6 * den:
            return Fraction(round(num), den)
    return Fraction(fps).limit_denominator(100000)


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 18) -> bytes:
    """Encode RGB frames as an H.264 mp4 held in memory.

    Args:
        frames: ``[F, H, W, 3]`` uint8 with even ``H`` and ``W``.
        fps: Frame rate.
        crf: x264 constant rate factor (18 is visually lossless).

    Returns:
        The mp4 file's bytes; every frame decodes back in order with the same count.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 with yuv420p needs even sizes, got {width}x{height}")
    buf = io.BytesIO()
    rate = fps_fraction(fps)
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Deterministic output (no threads racing) and frame-exact decoding (no B-frame reordering surprises).
        stream.options = {"crf": str(crf), "preset": "medium", "threads": "1", "bf": "0"}
        stream.codec_context.time_base = 1 / rate
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            vf.time_base = stream.codec_context.time_base
            container.mux(stream.encode(vf))
        container.mux(stream.encode())
    return buf.getvalue()


def encode_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """Encode mono float audio in [−1, 1] as 16-bit PCM wav bytes."""
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {list(audio.shape)}")
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0).astype(np.float32), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode wav bytes to mono float32 ``[S]`` and the sample rate."""
    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(sr)


def encode_npy(array: np.ndarray) -> bytes:
    """``np.save`` into bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()
