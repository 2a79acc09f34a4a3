"""Full-reference pixel metrics: PSNR and SSIM, per frame and averaged over frames.

Both compare a generated video with its ground truth frame by frame (same ``[T, H, W, 3]`` shape, see
:mod:`eval.metrics.video`) on 8-bit values (``data_range = 255``) and report the mean over frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from eval.metrics.video import as_video, check_same_shape

__all__ = ["SSIM_K1", "SSIM_K2", "SSIM_SIGMA", "SSIM_WINDOW", "psnr", "psnr_per_frame", "ssim", "ssim_per_frame"]

DATA_RANGE = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def psnr_per_frame(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSNR of each frame: ``10 · log10(255² / MSE)`` over all pixels and channels.

    Args:
        generated: ``[T, H, W, 3]`` video.
        reference: ``[T, H, W, 3]`` video of the same shape.

    Returns:
        float64 ``[T]`` in dB; ``inf`` for identical frames.
    """
    gen, ref = as_video(generated, "generated"), as_video(reference, "reference")
    check_same_shape(gen, ref)
    diff = gen.astype(np.float64) - ref.astype(np.float64)
    mse = (diff**2).reshape(diff.shape[0], -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(DATA_RANGE**2 / mse)


def psnr(generated: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-frame PSNR in dB (``inf`` when every frame is identical, or any frame is).

    Args:
        generated: ``[T, H, W, 3]`` video.
        reference: ``[T, H, W, 3]`` video of the same shape.
    """
    return float(psnr_per_frame(generated, reference).mean())


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_per_frame(generated: np.ndarray, reference: np.ndarray, batch_frames: int = 16) -> np.ndarray:
    """SSIM (Wang et al. 2004) of each frame, on each RGB channel and averaged over channels.

    The standard settings: an 11×11 Gaussian window with σ = 1.5 (separable, normalised to sum 1),
    ``C1 = (0.01 · 255)²``, ``C2 = (0.03 · 255)²``, population (biased) local statistics, and the SSIM map
    averaged over the "valid" region (no padding: positions whose whole window lies inside the frame), as
    in the authors' reference code and ``skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False)``. Computed in float64.

    Args:
        generated: ``[T, H, W, 3]`` video, frames at least 11×11.
        reference: ``[T, H, W, 3]`` video of the same shape.
        batch_frames: Frames per convolution batch (memory only; does not change the result).

    Returns:
        float64 ``[T]`` in [-1, 1]; 1 for identical frames.
    """
    gen, ref = as_video(generated, "generated"), as_video(reference, "reference")
    check_same_shape(gen, ref)
    if min(gen.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {list(gen.shape[1:3])}")
    g = _gaussian_window()
    wy, wx = g.view(1, 1, -1, 1).repeat(3, 1, 1, 1), g.view(1, 1, 1, -1).repeat(3, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, wy, groups=3), wx, groups=3)

    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    out = []
    for start in range(0, gen.shape[0], max(1, batch_frames)):
        x = torch.from_numpy(gen[start : start + batch_frames]).permute(0, 3, 1, 2).double()
        y = torch.from_numpy(ref[start : start + batch_frames]).permute(0, 3, 1, 2).double()
        mx, my = blur(x), blur(y)
        sxx = blur(x * x) - mx * mx
        syy = blur(y * y) - my * my
        sxy = blur(x * y) - mx * my
        smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        out.append(smap.mean(dim=(1, 2, 3)))
    return torch.cat(out).numpy()


def ssim(generated: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-frame SSIM (see :func:`ssim_per_frame`).

    Args:
        generated: ``[T, H, W, 3]`` video.
        reference: ``[T, H, W, 3]`` video of the same shape.
    """
    value = float(ssim_per_frame(generated, reference).mean())
    if not math.isfinite(value):
        raise RuntimeError(f"SSIM came out non-finite ({value})")
    return value
