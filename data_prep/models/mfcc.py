"""MFCC features identical to ``python_speech_features.mfcc`` with its default arguments.

SyncNet's audio tower was trained on the output of ``python_speech_features.mfcc(audio, 16000)`` (see the
official ``SyncNetInstance.evaluate``), so the features must match that function number for number, not
merely be "an MFCC". This is an independent numpy/scipy implementation of the same recipe (the package is
not a dependency), with the package's defaults (``python_speech_features/base.py`` and ``sigproc.py``):

- pre-emphasis ``y[0] = x[0]``, ``y[n] = x[n] − 0.97·x[n−1]``;
- frames of ``round_half_up(0.025·sr)`` samples every ``round_half_up(0.01·sr)`` samples (400 / 160 at
  16 kHz, i.e. 100 frames per second); ``1 + ceil((N − 400) / 160)`` frames (one frame when ``N ≤ 400``),
  the tail zero-padded to whole frames;
- **no** analysis window (the package's default ``winfunc`` is all ones, a rectangular window);
- power spectrum ``|rfft(frame, nfft)|² / nfft`` with ``nfft`` the smallest power of two ≥ the frame
  length (512 at 16 kHz);
- 26 triangular mel filters between 0 Hz and ``sr/2``, mel = ``2595·log10(1 + f/700)``, filter edges at FFT
  bins ``floor((nfft + 1)·f/sr)``; zero energies replaced by machine epsilon before the log;
- DCT-II with orthonormal scaling of the log filterbank energies, first 13 coefficients;
- sinusoidal lifter ``1 + (22/2)·sin(π·n/22)``;
- ``appendEnergy``: coefficient 0 replaced by the log of the frame's total power-spectrum energy.

Everything is computed in float64, as the package does.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct

__all__ = [
    "frame_signal",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "mfcc",
    "round_half_up",
]


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves away from zero for positive values (the package's frame rounding)."""
    return int(math.floor(x + 0.5))


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray | float:
    """HTK mel scale, ``2595·log10(1 + f/700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray | float:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    num_filters: int = 26,
    nfft: int = 512,
    sample_rate: int = 16000,
    low_freq: float = 0.0,
    high_freq: float | None = None,
) -> np.ndarray:
    """Triangular mel filterbank on FFT bins, as ``python_speech_features.get_filterbanks``.

    Args:
        num_filters: Number of filters.
        nfft: FFT size.
        sample_rate: Sample rate in Hz.
        low_freq: Lowest band edge in Hz.
        high_freq: Highest band edge in Hz; ``None`` means ``sample_rate / 2``.

    Returns:
        float64 ``[num_filters, nfft // 2 + 1]``, one filter per row.
    """
    high_freq = high_freq or sample_rate / 2
    if high_freq > sample_rate / 2:
        raise ValueError(f"high_freq {high_freq} is above the Nyquist frequency {sample_rate / 2}")
    mel_points = np.linspace(hz_to_mel(low_freq), hz_to_mel(high_freq), num_filters + 2)
    # The filter edges are quantised to whole FFT bins first and the triangles drawn between the integer
    # edges afterwards; this is what gives the package's (slightly uneven) filters.
    edges = np.floor((nfft + 1) * mel_to_hz(mel_points) / sample_rate)
    bins = np.arange(nfft // 2 + 1, dtype=np.float64)[None, :]
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= left) & (bins < centre), (bins - left) / (centre - left), 0.0)
        falling = np.where((bins >= centre) & (bins < right), (right - bins) / (right - centre), 0.0)
    return rising + falling


def frame_signal(signal: np.ndarray, frame_len: int, frame_step: int) -> np.ndarray:
    """Cut a signal into overlapping frames, zero-padding the tail to whole frames (no window).

    Args:
        signal: ``[N]`` samples.
        frame_len: Frame length in samples.
        frame_step: Hop in samples.

    Returns:
        ``[1 + ceil((N − frame_len) / frame_step), frame_len]`` (one frame when ``N ≤ frame_len``).
    """
    n = signal.shape[0]
    num_frames = 1 if n <= frame_len else 1 + math.ceil((n - frame_len) / frame_step)
    padded = np.zeros((num_frames - 1) * frame_step + frame_len, dtype=np.float64)
    padded[:n] = signal
    starts = np.arange(num_frames)[:, None] * frame_step
    return padded[starts + np.arange(frame_len)[None, :]]


def mfcc(
    signal: np.ndarray,
    sample_rate: int = 16000,
    win_len: float = 0.025,
    win_step: float = 0.01,
    num_cep: int = 13,
    num_filters: int = 26,
    nfft: int | None = None,
    low_freq: float = 0.0,
    high_freq: float | None = None,
    preemph: float = 0.97,
    cep_lifter: int = 22,
    append_energy: bool = True,
) -> np.ndarray:
    """MFCCs with ``python_speech_features.mfcc``'s defaults (rectangular window).

    The scale of ``signal`` matters for coefficient 0 (log frame energy): SyncNet was fed int16 sample
    values, not floats in [-1, 1] (see :func:`data_prep.models.syncnet_scoring.audio_mfcc`).

    Args:
        signal: ``[N]`` mono samples (any real dtype; computed in float64).
        sample_rate: Sample rate in Hz.
        win_len: Frame length in seconds.
        win_step: Frame hop in seconds.
        num_cep: Number of cepstral coefficients kept.
        num_filters: Number of mel filters.
        nfft: FFT size; ``None`` picks the smallest power of two ≥ the frame length.
        low_freq: Lowest mel band edge in Hz.
        high_freq: Highest mel band edge in Hz; ``None`` means ``sample_rate / 2``.
        preemph: Pre-emphasis coefficient (0 disables it).
        cep_lifter: Lifter coefficient (≤ 0 disables it).
        append_energy: Replace coefficient 0 by the log total frame energy.

    Returns:
        float64 ``[num_frames, num_cep]``, 100 frames per second with the defaults.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"signal must be a non-empty 1-D array, got shape {list(x.shape)}")
    frame_len = round_half_up(win_len * sample_rate)
    frame_step = round_half_up(win_step * sample_rate)
    if nfft is None:
        nfft = 1
        while nfft < win_len * sample_rate:
            nfft *= 2

    emphasised = np.concatenate([x[:1], x[1:] - preemph * x[:-1]])
    frames = frame_signal(emphasised, frame_len, frame_step)
    power = np.abs(np.fft.rfft(frames, nfft, axis=1)) ** 2 / nfft

    eps = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)  # silent frames: log(0) would be -inf
    fbank = power @ mel_filterbank(num_filters, nfft, sample_rate, low_freq, high_freq).T
    fbank = np.where(fbank == 0, eps, fbank)

    cep = dct(np.log(fbank), type=2, axis=1, norm="ortho")[:, :num_cep]
    if cep_lifter > 0:
        n = np.arange(cep.shape[1])
        cep = cep * (1.0 + (cep_lifter / 2.0) * np.sin(np.pi * n / cep_lifter))
    if append_energy:
        cep[:, 0] = np.log(energy)
    return cep
