"""Audio for the whole project: any file (or bytes, or array) → 16 kHz mono float32, one downmix, one resampler.

data_prep (:mod:`data_prep.decode`), eval (shard audio, SyncNet's audio) and the dub path all come
through here, so a waveform means the same thing everywhere:

- **Downmix**: ffmpeg's, as ``ffmpeg -ac 1`` applies it. Stereo becomes the mean of the two channels;
  other layouts get libswresample's standard matrix (centre 1, front left/right 1/√2, surrounds 1/2,
  LFE 0 for 5.1) scaled so that its coefficients sum to 1. libswresample leaves that matrix unscaled when
  it writes float samples (stereo comes out √2 too loud, 5.1 about 3.4×), so the ``rematrix_maxval=1``
  option asks for the scaling ffmpeg applies when it writes the 16-bit PCM of ``-ac 1 -ar 16000 x.wav``.
- **Resampler**: libswresample through PyAV (FFmpeg's ``aresample`` filter with its default settings),
  the resampler of ``ffmpeg -ar 16000``. data_prep's decoder and the official SyncNet pipeline both go
  through ffmpeg, so this keeps talkdit's audio and the reference audio of published Sync-C numbers
  equal to 16-bit rounding, and one library does decoding, downmix and resampling in one pass.
- **Samples**: float32 in [-1, 1] (16-bit sources map ``x / 32768`` exactly), not rounded to 16 bits; the
  shards store them as 16-bit PCM.

Against ``ffmpeg -i x -ac 1 -ar 16000 x.wav`` the result agrees within ±2 16-bit steps (AAC stereo and
5.1 sources: within half a step, i.e. the CLI's own rounding; ``tests/data_prep/test_audio.py``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from fractions import Fraction

import av
import numpy as np

__all__ = [
    "AUDIO_RATE",
    "AudioDecodeError",
    "audio_window",
    "decode_audio",
    "mono_resampler",
    "resample_audio",
    "resampled_samples",
]

AUDIO_RATE = 16000
# libswresample scales its downmix matrix to a unit row sum only for integer output unless told so.
_SWR_OPTIONS = {"rematrix_maxval": "1.0"}


class AudioDecodeError(ValueError):
    """A file or buffer has no decodable audio; the message names it and says what was expected."""


def mono_resampler(rate: int = AUDIO_RATE) -> av.AudioResampler:
    """The project's resampler: any PyAV audio frame → float32 mono at ``rate`` with ffmpeg's ``-ac 1`` downmix.

    Feed it every decoded frame of one stream in order, then ``resample(None)`` to flush the filter's tail.

    Args:
        rate: Output sample rate in Hz.
    """
    return av.AudioResampler(format="flt", layout="mono", rate=int(rate), options=_SWR_OPTIONS)


def resampled_samples(frames: Iterable[av.AudioFrame], resampler: av.AudioResampler) -> np.ndarray:
    """Run decoded frames through ``resampler`` (flushed at the end) and concatenate the result.

    Returns:
        float32 ``[S]``.
    """
    chunks = [out.to_ndarray().reshape(-1) for frame in frames for out in resampler.resample(frame)]
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)


def decode_audio(source: str | os.PathLike | bytes, rate: int = AUDIO_RATE) -> np.ndarray:
    """The first audio stream of a media file (or of its bytes) as mono float32 at ``rate``.

    This is the one function that turns a file into a waveform (shard ``audio.wav`` members, a user's
    speech for dubbing, any container and codec FFmpeg reads). Sample 0 is the stream's first decoded
    sample, as ``ffmpeg -i <file> -vn -ac 1 -ar 16000 out.wav`` writes it.

    Args:
        source: A path, or the file's bytes.
        rate: Output sample rate in Hz.

    Returns:
        float32 ``[S]`` in [-1, 1].

    Raises:
        AudioDecodeError: The file cannot be opened, has no audio stream, or its audio does not decode.
    """
    name = "<bytes>" if isinstance(source, bytes | bytearray) else os.fspath(source)
    target = io.BytesIO(source) if isinstance(source, bytes | bytearray) else name
    try:
        container = av.open(target, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as err:
        raise AudioDecodeError(f"{name}: cannot be opened as a media file: {err}") from err
    with container:
        if not container.streams.audio:
            raise AudioDecodeError(f"{name}: has no audio stream (expected a file with audio)")
        stream = container.streams.audio[0]
        try:
            decoded = (frame for packet in container.demux(stream) for frame in packet.decode())
            audio = resampled_samples(decoded, mono_resampler(rate))
        except (av.error.FFmpegError, ValueError) as err:
            raise AudioDecodeError(f"{name}: its audio stream does not decode: {err}") from err
    return audio


def resample_audio(audio: np.ndarray, sample_rate: int, rate: int = AUDIO_RATE) -> np.ndarray:
    """A mono waveform at ``sample_rate`` resampled to ``rate`` with the project's resampler.

    Args:
        audio: ``[S]`` mono, float in [-1, 1] or int16 (scaled by 1/32768).
        sample_rate: Its rate in Hz.
        rate: Output rate in Hz.

    Returns:
        float32 ``[S']`` with ``S' ≈ S · rate / sample_rate`` (a float32 copy when the rates match).

    Raises:
        ValueError: ``audio`` is not 1-D, or a rate is not a positive integer.
    """
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {list(a.shape)}")
    for key, value in (("sample_rate", sample_rate), ("rate", rate)):
        if int(value) != value or value <= 0:
            raise ValueError(f"{key} must be a positive integer number of Hz, got {value!r}")
    x = a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32)
    if int(sample_rate) == int(rate) or x.size == 0:
        return x.copy()
    resampler = mono_resampler(rate)
    step = 4096

    def frames() -> Iterable[av.AudioFrame]:
        for start in range(0, x.shape[0], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[None, start : start + step]), format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = int(sample_rate), start, Fraction(1, int(sample_rate))
            yield frame

    return resampled_samples(frames(), resampler)


def audio_window(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples of ``audio`` from ``start``; silence where the window leaves the track."""
    out = np.zeros(length, np.float32)
    lo, hi = max(0, start), min(audio.shape[0], start + length)
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out
