"""PSNR, SSIM and the Fréchet distance against closed forms and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from scipy.signal import convolve2d

from eval.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_from_features
from eval.metrics.pixel import psnr, psnr_per_frame, ssim, ssim_per_frame


def rand_video(seed: int, shape=(3, 24, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_identical_videos():
    v = rand_video(0)
    assert psnr(v, v) == math.inf
    assert ssim(v, v) == pytest.approx(1.0, abs=1e-12)


def test_psnr_constant_offset():
    v = np.full((2, 16, 16, 3), 100, np.uint8)
    # MSE = 10² → PSNR = 10·log10(255² / 100)
    assert psnr(v + 10, v) == pytest.approx(10 * math.log10(255**2 / 100))
    per = psnr_per_frame(np.stack([v[0] + 5, v[1] + 20]), v)
    np.testing.assert_allclose(per, [10 * math.log10(255**2 / 25), 10 * math.log10(255**2 / 400)])


def test_float_input_matches_uint8():
    v, w = rand_video(1), rand_video(2)
    assert psnr(v / 255.0, w / 255.0) == pytest.approx(psnr(v, w))
    assert ssim(v.astype(np.float32) / 255, w) == pytest.approx(ssim(v, w))


def test_ssim_of_constant_frames_closed_form():
    # Flat frames: σ = 0, so SSIM = (2ab + C1) / (a² + b² + C1).
    a, b = 100.0, 140.0
    c1 = (0.01 * 255) ** 2
    got = ssim(np.full((1, 20, 20, 3), a, np.uint8), np.full((1, 20, 20, 3), b, np.uint8))
    assert got == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)


def reference_ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s SSIM on one channel with a 2-D Gaussian window and 'valid' convolution."""
    r = np.arange(11) - 5
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w = g / g.sum()
    x, y = x.astype(np.float64), y.astype(np.float64)

    def f(z):
        return convolve2d(z, w, mode="valid")

    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean())


def test_ssim_matches_direct_2d_computation():
    v = rand_video(3, (2, 30, 27, 3))
    w = np.clip(v.astype(int) + np.random.default_rng(4).integers(-40, 40, v.shape), 0, 255).astype(np.uint8)
    want = [np.mean([reference_ssim_channel(v[t, ..., c], w[t, ..., c]) for c in range(3)]) for t in range(2)]
    np.testing.assert_allclose(ssim_per_frame(v, w), want, rtol=0, atol=1e-10)


def test_pixel_metrics_reject_bad_input():
    v = rand_video(0)
    with pytest.raises(ValueError, match=r"same \[T, H, W, 3\] shape"):
        psnr(v, v[:2])
    with pytest.raises(ValueError, match="channels last"):
        ssim(v.transpose(0, 3, 1, 2), v.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        psnr(v.astype(np.float32), v.astype(np.float32))
    with pytest.raises(TypeError, match="int32"):
        psnr(v.astype(np.int32), v)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(v[:, :8, :8], v[:, :8, :8])


# ------------------------------------------------------------------------------------------ Fréchet distance


def test_frechet_zero_for_identical_features():
    f = np.random.default_rng(0).standard_normal((50, 8))
    assert frechet_distance_from_features(f, f) == pytest.approx(0.0, abs=1e-9)
    # Fewer samples than dimensions (singular covariance) still gives 0.
    g = np.random.default_rng(1).standard_normal((5, 40))
    assert frechet_distance_from_features(g, g) == pytest.approx(0.0, abs=1e-8)


def test_frechet_closed_form_diagonal_gaussians():
    # For diagonal covariances: ‖μ1 − μ2‖² + Σ (σ1ᵢ − σ2ᵢ)².
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])  # variances
    want = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(want, abs=1e-10)


def test_frechet_closed_form_commuting_and_general():
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a, b = np.diag(rng.uniform(0.5, 3, 6)), np.diag(rng.uniform(0.5, 3, 6))
    s1, s2 = q @ a @ q.T, q @ b @ q.T  # commuting: tr sqrt(Σ1Σ2) = Σ sqrt(aᵢ bᵢ)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    want = np.sum((mu1 - mu2) ** 2) + np.trace(a) + np.trace(b) - 2 * np.sum(np.sqrt(np.diag(a) * np.diag(b)))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)

    m1, m2 = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    g1, g2 = m1 @ m1.T, m2 @ m2.T
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(g1 + g2 - 2 * scipy.linalg.sqrtm(g1 @ g2).real)
    assert frechet_distance(mu1, g1, mu2, g2) == pytest.approx(ref, rel=1e-8)


def test_frechet_matches_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(3)
    f1, f2 = rng.standard_normal((200, 16)), rng.standard_normal((150, 16)) * 1.3 + 0.2
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_bad_input():
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_statistics(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="mu1"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(2), np.eye(2))
