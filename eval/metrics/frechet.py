"""The Fréchet distance between two Gaussians fitted to feature sets (the distance behind FID and FVD).

``d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})``. The trace of the matrix square root is
computed in a stable eigen form: ``S = Σ₁^{1/2}`` from the eigen-decomposition of the symmetric PSD ``Σ₁``,
then ``tr (S Σ₂ S)^{1/2} = Σ √λᵢ`` over the (clipped non-negative) eigenvalues of the symmetric PSD
``S Σ₂ S``. This equals ``tr sqrtm(Σ₁ Σ₂)`` (the form pytorch-fid evaluates with ``scipy.linalg.sqrtm``)
because ``Σ₁ Σ₂`` is similar to ``S Σ₂ S``, and it needs no ``eps`` for singular covariances (fewer
samples than feature dimensions).
"""

from __future__ import annotations

import numpy as np

__all__ = ["feature_statistics", "frechet_distance", "frechet_distance_from_features"]


def feature_statistics(features: np.ndarray, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a feature set, as pytorch-fid and StyleGAN-V compute them.

    Args:
        features: ``[N, D]`` with ``N ≥ 2``.
        name: How error messages call the argument.

    Returns:
        ``(mu [D], sigma [D, D])`` float64; the covariance is the unbiased one (``np.cov``, ``N − 1``).
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {list(f.shape)}")
    if f.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples for a covariance, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError(f"{name} has non-finite values")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_eigenvalues(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix with the float64 rounding noise near zero set to zero.

    Values below ``D · eps · max`` become 0, so singular covariances do not leak ``√noise`` into the trace.
    """
    floor = w.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 1e-300)
    return np.where(w > floor, w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(_psd_eigenvalues(w))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Args:
        mu1: ``[D]`` mean.
        sigma1: ``[D, D]`` symmetric PSD covariance.
        mu2: ``[D]`` mean.
        sigma2: ``[D, D]`` symmetric PSD covariance.

    Returns:
        The distance (≥ 0; 0 for identical statistics).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"expected mu [D] and sigma [D, D] of one D; got mu1 {list(mu1.shape)}, sigma1 {list(sigma1.shape)}, "
            f"mu2 {list(mu2.shape)}, sigma2 {list(sigma2.shape)}"
        )
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(s).all():
            raise ValueError(f"{name} has non-finite values")
        if not np.allclose(s, s.T, rtol=1e-5, atol=1e-8 * max(1.0, float(np.abs(s).max()))):
            raise ValueError(f"{name} must be symmetric")
    s1 = _psd_sqrt(sigma1)
    middle = s1 @ sigma2 @ s1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(_psd_eigenvalues(eig)).sum())
    diff = mu1 - mu2
    # Mathematically >= 0; a negative value can only be rounding and is reported as 0.
    return max(0.0, float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean))


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted (:func:`feature_statistics`) to two ``[N, D]`` feature sets."""
    mu1, s1 = feature_statistics(features1, "features1")
    mu2, s2 = feature_statistics(features2, "features2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature sets differ in dimension: {mu1.shape[0]} vs {mu2.shape[0]}")
    return frechet_distance(mu1, s1, mu2, s2)
