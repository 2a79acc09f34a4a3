"""CPBD against the values of Narvekar & Karam's reference implementation, and what a user reads from it."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, zoom

from eval.metrics.sharpness import cpbd, cpbd_video, luminance

# The reference implementation's CPBD (cpbd 1.0.7, the Python port of the authors' MATLAB code, run with its
# imports patched for today's SciPy and scikit-image) on texture(seed) blurred by sigma.
REFERENCE = {
    (0, 0.0): 0.9615784008307373,
    (0, 0.7): 0.429398351166462,
    (0, 1.5): 0.007228915662650603,
    (0, 3.0): 0.0,
    (1, 0.0): 0.9619532044760937,
    (1, 0.7): 0.4352861035422343,
    (1, 1.5): 0.010050251256281407,
}


def texture(seed, sigma, h=192, w=256):
    """Edges at three scales (upsampled noise), 8-bit, blurred by a Gaussian of ``sigma`` pixels."""
    rng = np.random.default_rng(seed)
    img = sum(zoom(rng.normal(0, 1, (h // s, w // s)), s, order=0) * s**0.5 for s in (2, 8, 32))
    img = 128 + 40 * img / img.std()
    return np.clip(np.round(gaussian_filter(img, sigma) if sigma else img), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("seed", "sigma"), sorted(REFERENCE))
def test_cpbd_equals_the_reference_implementation(seed, sigma):
    assert cpbd(texture(seed, sigma).astype(np.float64)) == pytest.approx(REFERENCE[(seed, sigma)], abs=1e-12)


def test_blur_lowers_cpbd_and_the_video_value_is_the_frame_mean():
    frames = np.stack([np.repeat(texture(0, s)[..., None], 3, -1) for s in (0.0, 0.7, 1.5)])
    values = [cpbd_video(f[None]) for f in frames]
    assert values[0] > 0.9 > values[1] > 0.3 > values[2]
    assert cpbd_video(frames) == pytest.approx(np.mean(values))


def test_luminance_is_pils():
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    assert np.array_equal(luminance(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


def test_frames_without_edge_blocks_have_no_value():
    assert cpbd_video(np.full((2, 48, 48, 3), 128, np.uint8)) is None  # smaller than one 64x64 block
    assert cpbd(np.full((128, 128), 90.0)) is None  # flat: no edge
