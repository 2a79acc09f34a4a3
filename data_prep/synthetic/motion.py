"""Non-verbal motion of a speaker over time: head sway and nods, and eye blinks."""

from __future__ import annotations

import numpy as np


def head_pose(rng: np.random.Generator, times_s: np.ndarray, emphasis: np.ndarray) -> np.ndarray:
    """Smooth head motion: slow sway plus small nods on emphasised speech.

    Args:
        rng: source of randomness.
        times_s: float [F] sample times in seconds.
        emphasis: float [F] in [0, 1], how strongly the speaker is talking at each time (mouth opening).

    Returns:
        float32 [F, 3] (yaw, pitch, roll) in degrees, each within about +-6.
    """
    times = np.asarray(times_s, np.float64)
    pose = np.zeros((times.shape[0], 3))
    amplitudes = (3.0, 2.0, 1.6)  # yaw sways most, roll least
    for axis, amplitude in enumerate(amplitudes):
        freqs = rng.uniform(0.07, 0.45, size=3)
        phases = rng.uniform(0.0, 2.0 * np.pi, size=3)
        weights = rng.dirichlet(np.ones(3))
        waves = np.sin(2.0 * np.pi * freqs[:, None] * times[None, :] + phases[:, None])
        pose[:, axis] = amplitude * (weights[:, None] * waves).sum(axis=0) * np.sqrt(3.0)
        pose[:, axis] += rng.uniform(-0.4, 0.4) * amplitude  # a resting pose that is not exactly frontal
    # Speakers nod a little with stressed syllables; a slow average of the mouth opening tracks stress.
    pose[:, 1] += 1.5 * _slow(times, np.asarray(emphasis, np.float64), 0.35)
    return np.clip(pose, -6.0, 6.0).astype(np.float32)


def blinks(rng: np.random.Generator, times_s: np.ndarray) -> np.ndarray:
    """Eye closure over time: a blink every 2-5 s, closing in ~80 ms and reopening in ~150 ms.

    Args:
        rng: source of randomness.
        times_s: float [F] sample times in seconds (non-negative).

    Returns:
        float32 [F] in [0, 1]; 1 = fully closed.
    """
    times = np.asarray(times_s, np.float64)
    end = float(times.max()) if times.size else 0.0
    closure = np.zeros(times.shape[0])
    start = rng.uniform(0.3, 2.5)
    while start < end + 0.5:
        close_s = rng.uniform(0.06, 0.1)
        hold_s = rng.uniform(0.02, 0.05)
        open_s = rng.uniform(0.12, 0.2)
        rel = times - start
        closing = np.clip(rel / close_s, 0.0, 1.0)
        opening = np.clip(1.0 - (rel - close_s - hold_s) / open_s, 0.0, 1.0)
        shape = np.where(rel < close_s, closing, np.where(rel < close_s + hold_s, 1.0, opening))
        shape = np.where(rel < 0, 0.0, shape)
        closure = np.maximum(closure, shape * shape * (3.0 - 2.0 * shape))
        start += rng.uniform(2.0, 5.0)
    return closure.astype(np.float32)


def _slow(times: np.ndarray, values: np.ndarray, width_s: float) -> np.ndarray:
    """Gaussian smoothing (sigma ``width_s``) of samples at sorted times, via a 100 Hz uniform grid."""
    if times.shape[0] < 2:
        return values.copy()
    step = 0.01
    grid = np.arange(times[0], times[-1] + step, step)
    on_grid = np.interp(grid, times, values)
    radius = int(np.ceil(3 * width_s / step))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) * step / width_s) ** 2)
    kernel /= kernel.sum()
    smooth = np.convolve(np.pad(on_grid, radius, mode="edge"), kernel, mode="valid")
    return np.interp(times, grid, smooth)
