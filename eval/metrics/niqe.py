"""NIQE: the Natural Image Quality Evaluator (RASA's no-reference quality column; lower is better).

Mittal, Soundararajan & Bovik, "Making a 'Completely Blind' Image Quality Analyzer", IEEE SPL 2013, as the
authors' MATLAB release (``computequality.m``) computes it:

1. The grey image (MATLAB's ``rgb2gray``) is cropped to whole 96×96 patches.
2. At two scales (the image, then MATLAB's bicubic ``imresize(·, 0.5)`` with antialiasing), mean-subtracted
   contrast-normalised coefficients ``(I − μ) / (σ + 1)`` with a 7×7 Gaussian window (σ = 7/6, replicated
   borders); per patch (96, then 48 pixels) 18 features: the AGGD fit of the coefficients (shape, mean of the
   two scales) and, for the products with the neighbour right, below, below-right and below-left, the AGGD
   shape, mean and left/right scales.
3. A multivariate Gaussian fitted to the image's patch features is compared with the pristine model
   ``(mu_prisparam, cov_prisparam)`` of the release's ``modelparameters.mat``:
   ``sqrt((μ_p − μ)ᵀ pinv((Σ_p + Σ) / 2) (μ_p − μ))``.

The pristine model is the published one, never refitted here: ``TALKDIT_NIQE`` names the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import loadmat
from scipy.ndimage import correlate
from scipy.special import gammaln

from eval.metrics.video import as_video

PATCH = 96
SCALES = 2
# The AGGD shape grid of the release's estimateaggdparam.m (0.2:0.001:10) and its moment ratio per shape.
_SHAPES = np.round(np.arange(0.2, 10.0 + 5e-4, 0.001), 3)
_RATIO = np.exp(2 * gammaln(2 / _SHAPES) - gammaln(1 / _SHAPES) - gammaln(3 / _SHAPES))
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@dataclass(frozen=True)
class PristineModel:
    """The multivariate Gaussian of pristine patch features.

    Attributes:
        mean: ``[36]``.
        cov: ``[36, 36]``.
    """

    mean: np.ndarray
    cov: np.ndarray


def load_pristine_model(path: str | Path, device: str = "cpu") -> PristineModel:
    """Read ``mu_prisparam`` and ``cov_prisparam`` from the NIQE release's ``modelparameters.mat``.

    Args:
        path: The ``.mat`` file.
        device: Unused (the metric runs in NumPy); the signature of every metric loader.

    Raises:
        ValueError: The file is not a MATLAB file holding a 36-feature model.
    """
    try:
        mat = loadmat(str(path))
    except Exception as err:  # scipy raises ValueError, MatReadError, OSError... for other files
        raise ValueError(f"{path}: not a MATLAB .mat file ({err})") from err
    if "mu_prisparam" not in mat or "cov_prisparam" not in mat:
        raise ValueError(f"{path}: expected the NIQE model's mu_prisparam and cov_prisparam, found {sorted(mat)}")
    mean = np.asarray(mat["mu_prisparam"], dtype=np.float64).ravel()
    cov = np.asarray(mat["cov_prisparam"], dtype=np.float64)
    if mean.shape != (18 * SCALES,) or cov.shape != (18 * SCALES, 18 * SCALES):
        raise ValueError(f"{path}: a model of {mean.shape} means and {cov.shape} covariance; NIQE has 36 features")
    return PristineModel(mean, cov)


def matlab_gray(frames: np.ndarray) -> np.ndarray:
    """MATLAB's ``rgb2gray`` of uint8 RGB (its coefficients, rounded to 8 bits) as float64 ``[...]``."""
    rgb = frames.astype(np.float64)
    return np.round(0.298936021293776 * rgb[..., 0] + 0.587043074451121 * rgb[..., 1] + 0.114020904255103 * rgb[..., 2])


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1) + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2))


def _halve_axis(image: np.ndarray, axis: int) -> np.ndarray:
    """MATLAB's bicubic ``imresize`` by 0.5 along one axis, with its antialiasing (kernel stretched 2×)."""
    scale, length = 0.5, image.shape[axis]
    out_len = int(np.ceil(length * scale))
    u = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)
    width = 4.0 / scale
    left = np.floor(u - width / 2)
    idx = left[:, None] + np.arange(int(np.ceil(width)) + 2)[None]  # 1-based, as MATLAB's contributions()
    weights = scale * _cubic(scale * (u[:, None] - idx))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(length), np.arange(length)[::-1]])  # symmetric borders
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * length)]
    keep = np.any(weights != 0, axis=0)
    weights, idx = weights[:, keep], idx[:, keep]
    moved = np.moveaxis(image, axis, 0)
    out = np.einsum("ok,ok...->o...", weights, moved[idx])
    return np.moveaxis(out, 0, axis)


def halve(image: np.ndarray) -> np.ndarray:
    """MATLAB's ``imresize(image, 0.5)`` (bicubic, antialiased) of a grey image ``[H, W]``."""
    return _halve_axis(_halve_axis(image, 0), 1)


def _gaussian_window() -> np.ndarray:
    x = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * (7 / 6) ** 2))
    return g / g.sum()


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients ``[H, W]`` (7×7 Gaussian, replicated borders)."""
    window = _gaussian_window()
    mu = correlate(image, window, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(image * image, window, mode="nearest") - mu * mu))
    return (image - mu) / (sigma + 1)


def aggd(values: np.ndarray) -> tuple[float, float, float]:
    """AGGD fit of ``values`` by moment matching on the release's shape grid: ``(shape, left scale, right scale)``."""
    left_std = np.sqrt(np.mean(values[values < 0] ** 2))
    right_std = np.sqrt(np.mean(values[values > 0] ** 2))
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shape = float(_SHAPES[np.argmin((_RATIO - r_norm) ** 2)])
    factor = np.sqrt(np.exp(gammaln(1 / shape) - gammaln(3 / shape)))
    return shape, float(left_std * factor), float(right_std * factor)


def patch_features(coeffs: np.ndarray) -> np.ndarray:
    """The 18 NIQE features ``[18]`` of one patch of MSCN coefficients (the release's computefeature.m)."""
    shape, left, right = aggd(coeffs.ravel())
    feats = [shape, (left + right) / 2]
    for shift in _SHIFTS:
        shape, left, right = aggd((coeffs * np.roll(coeffs, shift, axis=(0, 1))).ravel())
        mean = (right - left) * np.exp(gammaln(2 / shape) - gammaln(1 / shape))
        feats += [shape, mean, left, right]
    return np.asarray(feats)


def image_features(image: np.ndarray) -> np.ndarray:
    """Per-patch features ``[P, 36]`` of a grey image (two scales side by side).

    Raises:
        ValueError: The image is smaller than one 96×96 patch.
    """
    rows, cols = image.shape[0] // PATCH, image.shape[1] // PATCH
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs frames of at least {PATCH}x{PATCH} pixels, got {image.shape[0]}x{image.shape[1]}")
    image = image[: rows * PATCH, : cols * PATCH]
    per_scale = []
    for scale in range(1, SCALES + 1):
        coeffs, size = mscn(image), PATCH // scale
        # MATLAB's blkproc visits blocks column by column.
        per_scale.append(
            [
                patch_features(coeffs[r * size : (r + 1) * size, c * size : (c + 1) * size])
                for c in range(cols)
                for r in range(rows)
            ]
        )
        image = halve(image)
    return np.concatenate([np.asarray(f) for f in per_scale], axis=1)


def niqe(image: np.ndarray, model: PristineModel) -> float:
    """NIQE of one grey image ``[H, W]`` (0–255) against the pristine ``model``; lower is more natural.

    Raises:
        ValueError: The image is smaller than one patch, or has fewer than two patches without NaN features.
    """
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # flat patches give NaN features, dropped below
        feats = image_features(np.asarray(image, dtype=np.float64))
    complete = feats[~np.isnan(feats).any(axis=1)]  # MATLAB's nancov drops rows with a NaN, nanmean only the NaN
    if len(complete) < 2:
        raise ValueError(f"NIQE needs at least two textured {PATCH}x{PATCH} patches, got {len(complete)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a feature NaN in every patch stays NaN
        mean = np.nanmean(feats, axis=0)
    diff = model.mean - mean
    cov = np.cov(complete, rowvar=False)
    return float(np.sqrt(diff @ np.linalg.pinv((model.cov + cov) / 2) @ diff))


def niqe_video(video: np.ndarray, model: PristineModel) -> float:
    """Mean NIQE over the frames of a video ``[T, H, W, 3]`` (frames without two textured patches left out).

    Raises:
        ValueError: Frames smaller than one patch, or no frame with two textured patches.
    """
    frames = as_video(video, "video")
    if min(frames.shape[1:3]) < PATCH:
        raise ValueError(
            f"NIQE needs frames of at least {PATCH}x{PATCH} pixels, got {frames.shape[1]}x{frames.shape[2]}"
        )
    values, why = [], ""
    for frame in frames:
        try:
            values.append(niqe(matlab_gray(frame), model))
        except ValueError as err:  # too few textured patches in this frame
            why = str(err)
    if not values:
        raise ValueError(f"no frame has a NIQE value: {why}")
    return float(np.mean(values))
