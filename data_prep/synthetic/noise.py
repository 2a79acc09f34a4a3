"""Smooth random textures (value noise) used for skin, hair, clothing and backgrounds."""

from __future__ import annotations

import cv2
import numpy as np


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: float, octaves: int = 1) -> np.ndarray:
    """Band-limited noise made by upsampling random lattices (one per octave, halving the cell size).

    Args:
        rng: source of randomness.
        shape: (height, width) of the output in pixels.
        cell_px: lattice spacing of the coarsest octave, in pixels (>= 1).
        octaves: number of octaves; octave k has amplitude 0.5**k.

    Returns:
        float32 [height, width], zero mean, unit standard deviation.
    """
    height, width = shape
    total = np.zeros(shape, np.float32)
    amplitude = 1.0
    cell = max(1.0, float(cell_px))
    for _ in range(octaves):
        lattice = rng.standard_normal((int(np.ceil(height / cell)) + 3, int(np.ceil(width / cell)) + 3))
        up = cv2.resize(
            lattice.astype(np.float32),
            (int(round(lattice.shape[1] * cell)), int(round(lattice.shape[0] * cell))),
            interpolation=cv2.INTER_CUBIC,
        )
        offset = int(round(cell))
        total += amplitude * up[offset : offset + height, offset : offset + width]
        amplitude *= 0.5
        cell = max(1.0, cell / 2.0)
    total -= total.mean()
    return total / (total.std() + 1e-6)


def noise_1d(rng: np.random.Generator, length: int, cell: float) -> np.ndarray:
    """Smooth 1-D noise, used to give hair strands their individual brightness.

    Args:
        rng: source of randomness.
        length: number of samples.
        cell: lattice spacing in samples.

    Returns:
        float32 [length], zero mean, unit standard deviation.
    """
    return value_noise(rng, (1, length), cell)[0]


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 (at ``edge0``) to 1 (at ``edge1``); works for edge0 > edge1 too."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def coverage(signed_distance: np.ndarray, px_per_unit: float) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance (units, positive inside).

    Returns:
        float32 array of the same shape in [0, 1], with a one-pixel-wide edge ramp.
    """
    return np.clip(signed_distance * px_per_unit + 0.5, 0.0, 1.0).astype(np.float32)
