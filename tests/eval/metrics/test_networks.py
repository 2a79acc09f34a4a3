"""Network-based metrics: official weight layouts round-trip strictly, missing files are named, closed forms hold.

No official weights exist on this machine: every network here is randomly initialised (stated per test),
saved in the official file layout to a temporary folder and loaded back through the production loader.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from eval.metrics import fid as fid_mod
from eval.metrics import fvd as fvd_mod
from eval.metrics import identity, perceptual


def video(seed: int, shape=(4, 40, 48, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ LPIPS


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    """A randomly initialised torchvision AlexNet saved like ``alexnet-owt-7be5be79.pth``."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def test_lpips_loads_trunk_and_package_linear_layers(alexnet_file):
    import lpips

    model = perceptual.load_lpips(alexnet_file)
    trunk = torch.load(alexnet_file, weights_only=True)
    for idx, sl in ((0, 1), (3, 2), (6, 3), (8, 4), (10, 5)):
        assert torch.equal(getattr(getattr(model.net, f"slice{sl}"), str(idx)).weight, trunk[f"features.{idx}.weight"])
    shipped = torch.load(f"{lpips.__path__[0]}/weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    for i in range(5):
        assert torch.equal(model.lins[i].model[1].weight, shipped[f"lin{i}.model.1.weight"])


def test_lpips_identical_is_zero_and_different_is_positive(alexnet_file):
    # Random trunk (no ImageNet weights here): the values are not LPIPS numbers, but identity → 0 holds exactly.
    model = perceptual.load_lpips(alexnet_file)
    v, w = video(0), video(1)
    assert perceptual.lpips_distance(model, v, v) == 0.0
    per = perceptual.lpips_per_frame(model, v, w, batch_size=3)
    assert per.shape == (4,) and (per > 0).all()


def test_lpips_missing_and_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"alexnet-owt-7be5be79\.pth") as err:
        perceptual.load_lpips(tmp_path / "nope.pth")
    assert str(tmp_path / "nope.pth") in str(err.value) and "download.pytorch.org" in str(err.value)
    with pytest.raises(FileNotFoundError, match="TALKDIT_LPIPS_ALEXNET"):
        perceptual.load_lpips(None)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="alexnet layout"):
        perceptual.load_lpips(tmp_path / "bad.pth")


# -------------------------------------------------------------------------------------------------- FID


@pytest.fixture(scope="module")
def fid_file(tmp_path_factory):
    """A randomly initialised FID Inception saved with the official keys (torchvision Inception3 names)."""
    torch.manual_seed(0)
    model = fid_mod.FIDInception()
    for m in model.modules():  # init_weights=False leaves conv weights uninitialised: make them tame
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.05)
    path = tmp_path_factory.mktemp("w") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(model.net.state_dict(), path)
    return path


def test_fid_inception_has_the_official_key_layout():
    keys = fid_mod.FIDInception().net.state_dict()
    tv = torchvision.models.inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    assert {k: tuple(v.shape) for k, v in keys.items()} == {k: tuple(v.shape) for k, v in tv.state_dict().items()}
    assert tuple(keys["fc.weight"].shape) == (1008, 2048)


@pytest.mark.slow
def test_fid_inception_round_trip_and_matches_pytorch_fid(fid_file, monkeypatch):
    import pytorch_fid.inception as pfi

    model = fid_mod.load_fid_inception(fid_file)
    frames = video(2, (2, 64, 80, 3))
    feats = fid_mod.inception_features(model, frames)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    # pytorch-fid's own InceptionV3 with the same file (its download replaced by the local file).
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: torch.load(fid_file, weights_only=True))
    ref = pfi.InceptionV3([3]).eval()
    with torch.inference_mode():
        want = ref(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)[0].flatten(1).double().numpy()
    np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-5)


def test_fid_with_pluggable_extractor():
    def extractor(f):
        return f.reshape(f.shape[0], -1)[:, :6].astype(np.float64)  # pixels as features

    v, w = video(3, (10, 8, 8, 3)), video(4, (12, 8, 8, 3))
    assert fid_mod.fid(v, v, extractor) == pytest.approx(0.0, abs=1e-9)
    assert fid_mod.fid([v[:5], v[5:]], v, extractor) == pytest.approx(0.0, abs=1e-9)
    assert fid_mod.fid(v, w, extractor) > 0


def test_fid_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pt_inception-2015-12-05-6726825d\.pth") as err:
        fid_mod.load_fid_inception(tmp_path / "inception.pth")
    assert "pytorch-fid" in str(err.value) and str(tmp_path / "inception.pth") in str(err.value)


# -------------------------------------------------------------------------------------------------- FVD


class StubI3D(torch.nn.Module):
    """Has StyleGAN-V's I3D call signature; features: a fixed projection of the rescaled, pooled clip."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * 4, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        if rescale:
            x = x / 127.5 - 1
        pooled = torch.nn.functional.adaptive_avg_pool3d(x, (4, 1, 1)).flatten(1)
        return self.proj(pooled)


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(StubI3D()), str(path))
    return path


def test_fvd_through_torchscript_loader(i3d_file):
    extractor = fvd_mod.I3DFeatures(fvd_mod.load_i3d(i3d_file), batch_size=2)
    vids = [video(s, (16, 24, 24, 3)) for s in range(5)]
    other = [video(s + 10, (20, 24, 24, 3)) // 2 for s in range(5)]
    feats = extractor(fvd_mod.video_clips(vids))
    assert feats.shape == (5, 400)
    assert fvd_mod.fvd(vids, vids, extractor) == pytest.approx(0.0, abs=1e-6)
    assert fvd_mod.fvd(vids, other, extractor) > 0


def test_video_clips():
    v = video(0, (40, 8, 8, 3))
    assert fvd_mod.video_clips(v).shape == (1, 16, 8, 8, 3)
    all_clips = fvd_mod.video_clips([v, v[:33]], clips_per_video=None)
    assert all_clips.shape == (4, 16, 8, 8, 3)
    np.testing.assert_array_equal(all_clips[1], v[16:32])
    with pytest.raises(ValueError, match="needs 16"):
        fvd_mod.video_clips([v[:10]])


def test_fvd_missing_and_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"i3d_torchscript\.pt") as err:
        fvd_mod.load_i3d(tmp_path / "i3d.pt")
    assert "stylegan-v" in str(err.value)
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="TorchScript"):
        fvd_mod.load_i3d(tmp_path / "junk.pt")


# ----------------------------------------------------------------------------------------------- ArcFace


def official_iresnet_keys(blocks=(3, 13, 30, 3)) -> dict[str, tuple[int, ...]]:
    """insightface arcface_torch iresnet state-dict keys and shapes, written out from its layer description."""
    table: dict[str, tuple[int, ...]] = {}

    def bn(p, c):
        for n in ("weight", "bias", "running_mean", "running_var"):
            table[f"{p}.{n}"] = (c,)
        table[f"{p}.num_batches_tracked"] = ()

    table["conv1.weight"] = (64, 3, 3, 3)
    bn("bn1", 64)
    table["prelu.weight"] = (64,)
    cin = 64
    for s, (n, c) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for b in range(n):
            p = f"layer{s}.{b}"
            bn(f"{p}.bn1", cin)
            table[f"{p}.conv1.weight"] = (c, cin, 3, 3)
            bn(f"{p}.bn2", c)
            table[f"{p}.prelu.weight"] = (c,)
            table[f"{p}.conv2.weight"] = (c, c, 3, 3)
            bn(f"{p}.bn3", c)
            if b == 0:
                table[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                bn(f"{p}.downsample.1", c)
            cin = c
    bn("bn2", 512)
    table["fc.weight"], table["fc.bias"] = (512, 25088), (512,)
    bn("features", 512)
    return table


def test_iresnet100_has_the_official_key_layout():
    sd = identity.iresnet100().state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == official_iresnet_keys()


@pytest.mark.slow
def test_arcface_round_trip_strict(tmp_path):
    torch.manual_seed(0)
    model = identity.iresnet100().eval()
    path = tmp_path / "backbone.pth"
    torch.save(model.state_dict(), path)
    loaded = identity.load_arcface(path)
    crops = video(5, (2, 112, 112, 3))
    np.testing.assert_allclose(
        identity.arcface_embeddings(loaded, crops), identity.arcface_embeddings(model, crops), rtol=1e-5, atol=1e-5
    )
    sd = model.state_dict()
    del sd["layer2.0.downsample.0.weight"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"layer2\.0\.downsample\.0\.weight"):
        identity.load_arcface(tmp_path / "broken.pth")


def test_arcface_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"backbone\.pth") as err:
        identity.load_arcface(tmp_path / "r100" / "backbone.pth")
    assert "insightface" in str(err.value)


def test_alignment_maps_template_points_onto_template():
    # A face whose five points are the template scaled ×3, rotated 20° and shifted: the crop's points land on it.
    th = np.radians(20)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    src = identity.ARCFACE_TEMPLATE @ (3 * rot).T + [50, 70]
    m = identity.similarity_transform(src, identity.ARCFACE_TEMPLATE)
    np.testing.assert_allclose(np.c_[src, np.ones(5)] @ m.T, identity.ARCFACE_TEMPLATE, atol=1e-9)
    crops, kept = identity.align_faces(video(6, (2, 500, 500, 3)), np.stack([src, np.full((5, 2), np.nan)]))
    assert crops.shape == (1, 112, 112, 3) and kept.tolist() == [0]


def test_csim_and_face_sim_closed_forms():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert identity.csim(a, a) == pytest.approx(1.0)
    assert identity.csim(a, -a) == pytest.approx(-1.0)
    # cos to (1, 0): 1, 0, 1/√2
    assert identity.face_sim(a, np.array([2.0, 0.0])) == pytest.approx((1 + 0 + 2**-0.5) / 3)
    with_gap = a.copy()
    with_gap[1] = np.nan
    assert identity.face_sim(with_gap, np.array([2.0, 0.0])) == pytest.approx((1 + 2**-0.5) / 2)


# ------------------------------------------------------------------------------------------ the suite


def test_the_suite_loads_each_network_once_for_many_videos(alexnet_file, monkeypatch):
    from eval.metrics import MetricSuite, MetricWeights

    loads = []
    real = perceptual.load_lpips
    monkeypatch.setattr(perceptual, "load_lpips", lambda *a: loads.append(a) or real(*a))
    suite = MetricSuite(MetricWeights(lpips_alexnet=alexnet_file))
    first = suite(video(0), video(1), None, 25.0)
    second = suite(video(2), video(3), None, 25.0)
    assert len(loads) == 1  # one load serves both videos
    assert first["lpips"] > 0 and second["lpips"] > 0
    assert second["lpips"] == perceptual.lpips_distance(real(alexnet_file), video(2), video(3))
    assert "TALKDIT_FID_INCEPTION" in second.skipped["fid"]  # unset weights are still skipped, with the reason


def test_the_suite_gives_set_level_fid_and_fvd_over_a_group(fid_file, i3d_file):
    from eval.metrics import MetricSuite, MetricWeights

    suite = MetricSuite(MetricWeights(fid_inception=fid_file, i3d=i3d_file))
    gen = [video(s, (16, 40, 48, 3)) for s in range(3)]
    ref = [video(s + 10, (16, 40, 48, 3)) // 2 for s in range(3)]
    per_clip = [suite(g, r, None, 25.0, group="v2v_self") for g, r in zip(gen, ref, strict=True)]
    suite(gen[0], gen[0], None, 25.0, group="other")  # another row's videos stay out of this one
    values, skipped = suite.set_scores("v2v_self")
    model = fid_mod.load_fid_inception(fid_file)
    expected_fid = fid_mod.fid(gen, ref, lambda f: fid_mod.inception_features(model, f))
    expected_fvd = fvd_mod.fvd(gen, ref, fvd_mod.I3DFeatures(fvd_mod.load_i3d(i3d_file)), clips_per_video=None)
    assert values["fid"] == pytest.approx(expected_fid, rel=1e-6) and not skipped
    assert values["fvd"] == pytest.approx(expected_fvd, rel=1e-6)
    # The set's distance is not the mean of the clips' (each clip's covariance is fitted on its own frames).
    assert values["fid"] != pytest.approx(np.mean([v["fid"] for v in per_clip]), rel=1e-3)
    assert suite.set_scores("never")[1].keys() == {"fid", "fvd"}


def test_the_suite_refuses_an_unknown_sync_protocol():
    from eval.metrics import MetricSuite, MetricWeights

    with pytest.raises(ValueError, match="sync_protocol"):
        MetricSuite(MetricWeights(), sync_protocol="fast")
