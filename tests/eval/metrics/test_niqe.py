"""NIQE against pyiqa's implementation of the authors' MATLAB code, and what a user reads from it."""

import numpy as np
import pytest
from scipy.io import savemat
from scipy.ndimage import gaussian_filter

from eval.metrics import MetricSuite, MetricWeights
from eval.metrics.niqe import PristineModel, halve, image_features, load_pristine_model, matlab_gray, niqe

# pyiqa 0.1.16's niqe() (the authors' computequality.m in PyTorch) on these images with the pristine model
# below. pyiqa builds its Gaussian window and AGGD shape grid in float32, hence the 5e-5 relative tolerance.
REFERENCE = {
    (0, "sharp"): 7.251313476564288,
    (0, "blur1"): 402.4379701111392,
    (0, "noise"): 127.66131980390092,
    (1, "sharp"): 12.658214057028369,
    (1, "blur2"): 614.2259192476097,
}


def pink(seed, h=192, w=288):
    """1/f noise, the spectrum of natural images, as 8-bit grey levels."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.fft2(rng.normal(size=(h, w)))
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None])
    img = np.real(np.fft.ifft2(spectrum / np.maximum(radius, 1 / max(h, w))))
    return np.round(np.clip(128 + 45 * img / img.std(), 0, 255))


def distorted(seed, kind):
    img = pink(seed)
    if kind.startswith("blur"):
        return np.round(gaussian_filter(img, float(kind[-1])))
    if kind == "noise":
        return np.round(np.clip(img + np.random.default_rng(seed).normal(0, 20, img.shape), 0, 255))
    return img


@pytest.fixture(scope="module")
def model():
    """A pristine model fitted on six other 1/f images (the published one is not in the repository)."""
    feats = np.concatenate([image_features(pink(seed)) for seed in range(10, 16)])
    return PristineModel(feats.mean(axis=0), np.cov(feats, rowvar=False))


@pytest.mark.parametrize(("seed", "kind"), sorted(REFERENCE))
def test_niqe_equals_the_reference_implementation(model, seed, kind):
    assert niqe(distorted(seed, kind), model) == pytest.approx(REFERENCE[(seed, kind)], rel=5e-5)


def test_distortions_score_worse_than_an_image_like_the_pristine_ones(model):
    scores = {kind: niqe(distorted(0, kind), model) for kind in ("sharp", "noise", "blur1", "blur2")}
    assert scores["sharp"] < scores["noise"] < scores["blur1"] < scores["blur2"]


def test_halving_is_matlabs_bicubic_imresize():
    ramp = np.add.outer(np.arange(40.0), 10 * np.arange(30.0))
    out = halve(ramp)
    assert out.shape == (20, 15)
    # A linear ramp stays linear under the normalised cubic kernel away from the mirrored borders, sampled at
    # MATLAB's half-size pixel centres (source position 2k + 0.5, 0-based).
    rows, cols = 2 * np.arange(20.0) + 0.5, 2 * np.arange(15.0) + 0.5
    np.testing.assert_allclose(out[3:-3, 3:-3], (rows[:, None] + 10 * cols[None])[3:-3, 3:-3], rtol=1e-12)
    assert matlab_gray(np.array([[[255, 0, 0]]], np.uint8))[0, 0] == 76  # MATLAB's rgb2gray of pure red


def test_the_suite_reads_the_release_file_and_names_it_when_missing(model, tmp_path):
    video = np.repeat(np.stack([distorted(0, "sharp"), distorted(1, "sharp")])[..., None], 3, -1).astype(np.uint8)
    path = tmp_path / "modelparameters.mat"
    savemat(path, {"mu_prisparam": model.mean[None], "cov_prisparam": model.cov})
    values = MetricSuite(MetricWeights(niqe=path))(video, video, None, 25.0)
    expected = np.mean([niqe(matlab_gray(frame), load_pristine_model(path)) for frame in video])
    assert values["niqe"] == pytest.approx(expected)
    missing = MetricSuite(MetricWeights())(video, video, None, 25.0)
    assert missing["niqe"] is None and "TALKDIT_NIQE" in missing.skipped["niqe"]
    small = MetricSuite(MetricWeights(niqe=path))(video[:, :64, :64], video[:, :64, :64], None, 25.0)
    assert small["niqe"] is None and "at least 96x96" in small.skipped["niqe"]
    savemat(tmp_path / "other.mat", {"x": np.zeros(3)})
    with pytest.raises(ValueError, match="mu_prisparam and cov_prisparam"):
        load_pristine_model(tmp_path / "other.mat")
