"""The video convention every metric in :mod:`eval.metrics` takes, and its validation.

A video is a ``[T, H, W, 3]`` RGB array (frames, height, width, channels), either ``uint8`` in
``[0, 255]`` or floating point in ``[0, 1]``; a numpy array or a torch tensor (moved to the CPU). Floating
point input is converted to ``uint8`` by ``round(255 · x)`` after clipping to ``[0, 1]``, so every metric
sees the 8-bit frames an encoder would write.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_video", "check_same_shape"]


def as_video(video: np.ndarray | torch.Tensor, name: str = "video") -> np.ndarray:
    """Validate a video and return it as ``uint8 [T, H, W, 3]``.

    Args:
        video: ``[T, H, W, 3]`` RGB, uint8 in [0, 255] or float in [0, 1] (numpy or torch).
        name: How error messages call the argument.

    Returns:
        C-contiguous ``uint8 [T, H, W, 3]``.

    Raises:
        TypeError: Not an array, or an integer dtype other than uint8.
        ValueError: Wrong rank or channel count, no frames, non-finite or out-of-range float values.
    """
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().numpy()
    if not isinstance(video, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor [T, H, W, 3], got {type(video).__name__}")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{name} must be [T, H, W, 3] RGB (channels last), got shape {list(video.shape)}")
    if min(video.shape[:3]) < 1:
        raise ValueError(f"{name} must have at least one frame of at least 1x1 pixels, got shape {list(video.shape)}")
    if video.dtype == np.uint8:
        return np.ascontiguousarray(video)
    if np.issubdtype(video.dtype, np.floating):
        if not np.isfinite(video).all():
            raise ValueError(f"{name} has non-finite values")
        lo, hi = float(video.min()), float(video.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"float {name} must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
        return np.rint(np.clip(video, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise TypeError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got dtype {video.dtype}")


def check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("generated", "reference")) -> None:
    """Raise ``ValueError`` naming both shapes unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same [T, H, W, 3] shape, got {list(a.shape)} and {list(b.shape)}"
        )
