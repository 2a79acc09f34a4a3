"""SyncNet: official layout and checkpoint loading, MFCC, face crops, offset search and scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from data_prep.models import syncnet as sn
from data_prep.models.mfcc import mfcc
from data_prep.models.syncnet_crops import crop_faces, smooth_boxes
from data_prep.models.syncnet_scoring import audio_mfcc, embed_clip, score_clip

# --------------------------------------------------------------------------------------------------------------
# The official layer lists (joonson/syncnet_python, SyncNetModel.py, class S), written out independently of
# data_prep.models.syncnet. ("conv", in, out, kernel), ("bn", channels), ("linear", in, out); relu and pooling
# layers hold no tensors but take an index in their Sequential.
# --------------------------------------------------------------------------------------------------------------
RELU, POOL = ("relu",), ("pool",)
OFFICIAL_LAYERS = {
    "netcnnaud": [
        ("conv", 1, 64, (3, 3)), ("bn", 64), RELU, POOL,
        ("conv", 64, 192, (3, 3)), ("bn", 192), RELU, POOL,
        ("conv", 192, 384, (3, 3)), ("bn", 384), RELU,
        ("conv", 384, 256, (3, 3)), ("bn", 256), RELU,
        ("conv", 256, 256, (3, 3)), ("bn", 256), RELU, POOL,
        ("conv", 256, 512, (5, 4)), ("bn", 512), RELU,
    ],
    "netfcaud": [("linear", 512, 512), ("bn", 512), RELU, ("linear", 512, 1024)],
    "netfclip": [("linear", 512, 512), ("bn", 512), RELU, ("linear", 512, 1024)],
    "netcnnlip": [
        ("conv", 3, 96, (5, 7, 7)), ("bn", 96), RELU, POOL,
        ("conv", 96, 256, (1, 5, 5)), ("bn", 256), RELU, POOL,
        ("conv", 256, 256, (1, 3, 3)), ("bn", 256), RELU,
        ("conv", 256, 256, (1, 3, 3)), ("bn", 256), RELU,
        ("conv", 256, 256, (1, 3, 3)), ("bn", 256), RELU, POOL,
        ("conv", 256, 512, (1, 6, 6)), ("bn", 512), RELU,
    ],
}  # fmt: skip


def official_key_shapes() -> dict[str, tuple[int, ...]]:
    table: dict[str, tuple[int, ...]] = {}
    for seq, layers in OFFICIAL_LAYERS.items():
        for i, layer in enumerate(layers):
            p = f"{seq}.{i}."
            if layer[0] == "conv":
                _, cin, cout, k = layer
                table[p + "weight"], table[p + "bias"] = (cout, cin, *k), (cout,)
            elif layer[0] == "linear":
                _, cin, cout = layer
                table[p + "weight"], table[p + "bias"] = (cout, cin), (cout,)
            elif layer[0] == "bn":
                c = layer[1]
                for name in ("weight", "bias", "running_mean", "running_var"):
                    table[p + name] = (c,)
                table[p + "num_batches_tracked"] = ()
    return table


@pytest.fixture(scope="module")
def model() -> sn.SyncNet:
    torch.manual_seed(0)
    m = sn.SyncNet()
    # Non-trivial BatchNorm statistics, so that loading and eval-mode behaviour are really exercised.
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def test_state_dict_is_the_official_layout():
    sd = sn.SyncNet().state_dict()
    expected = official_key_shapes()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    # Same registration order as the official class (netcnnaud, netfcaud, netfclip, netcnnlip).
    assert list(sd) == list(expected)


def test_tower_output_shapes(model):
    with torch.inference_mode():
        assert model.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert model.forward_lip(torch.rand(1, 3, 5, 224, 224) * 255).shape == (1, 1024)


# ----------------------------------------------------------------------------------------------- loading


def test_load_official_layout_file(tmp_path, model):
    path = tmp_path / "syncnet_v2.model"
    torch.save(model.state_dict(), path)  # the official file is a torch.save-d state dict
    loaded = sn.load_syncnet(path)
    assert not loaded.training
    x_aud, x_lip = torch.randn(2, 1, 13, 20), torch.rand(1, 3, 5, 224, 224) * 255
    with torch.inference_mode():
        assert torch.equal(loaded.forward_aud(x_aud), model.forward_aud(x_aud))
        assert torch.equal(loaded.forward_lip(x_lip), model.forward_lip(x_lip))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_load_file_without_batchnorm_counters(tmp_path, model):
    # Files written before PyTorch 0.4.1 have no num_batches_tracked buffers (they do not affect scoring), and
    # files from before 1.6 use the legacy (non-zip) serialisation, which weights_only=True still reads.
    path = tmp_path / "old.model"
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path, _use_new_zipfile_serialization=False)
    loaded = sn.load_syncnet(path)
    assert torch.equal(loaded.netcnnlip[19].running_var, model.netcnnlip[19].running_var)


def test_missing_file_names_file_and_url(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        sn.load_syncnet(tmp_path / "nope" / "syncnet_v2.model")
    msg = str(err.value)
    assert "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model" in msg
    assert str(tmp_path / "nope" / "syncnet_v2.model") in msg


def test_wrong_layout_errors_name_the_keys(tmp_path):
    sd = sn.SyncNet(embed_dim=512).state_dict()  # netfcaud.3 / netfclip.3 are 512-wide instead of 1024
    torch.save(sd, tmp_path / "small.model")
    with pytest.raises(ValueError, match=r"netfcaud\.3\.weight"):
        sn.load_syncnet(tmp_path / "small.model")

    sd = sn.SyncNet().state_dict()
    sd["netcnnaud.99.weight"] = torch.zeros(1)
    del sd["netcnnlip.0.bias"]
    torch.save(sd, tmp_path / "keys.model")
    with pytest.raises(ValueError) as err:
        sn.load_syncnet(tmp_path / "keys.model")
    assert "netcnnaud.99.weight" in str(err.value) and "netcnnlip.0.bias" in str(err.value)

    torch.save(nn.Linear(2, 2), tmp_path / "module.model")  # a pickled module is refused, not executed
    with pytest.raises(ValueError, match="module.model"):
        sn.load_syncnet(tmp_path / "module.model")


# ------------------------------------------------------------------------------------------------- MFCC


def reference_mfcc(x: np.ndarray, sr: int = 16000) -> np.ndarray:
    """python_speech_features.mfcc defaults, written with explicit loops and an explicit DFT / DCT."""
    n_len, n_step, nfft, nfilt, ncep, lift = 400, 160, 512, 26, 13, 22
    y = np.empty(len(x))
    y[0] = x[0]
    for n in range(1, len(x)):
        y[n] = x[n] - 0.97 * x[n - 1]
    num_frames = 1 if len(y) <= n_len else 1 + int(math.ceil((len(y) - n_len) / n_step))
    mel_pts = np.linspace(0.0, 2595 * math.log10(1 + (sr / 2) / 700), nfilt + 2)
    edges = [math.floor((nfft + 1) * 700 * (10 ** (m / 2595) - 1) / sr) for m in mel_pts]
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(edges[j], edges[j + 1]):
            fb[j, i] = (i - edges[j]) / (edges[j + 1] - edges[j])
        for i in range(edges[j + 1], edges[j + 2]):
            fb[j, i] = (edges[j + 2] - i) / (edges[j + 2] - edges[j + 1])
    k = np.arange(nfft // 2 + 1)[:, None]
    dft = np.exp(-2j * np.pi * k * np.arange(n_len)[None, :] / nfft)  # zero-padding to nfft = shorter sum
    out = np.zeros((num_frames, ncep))
    for f in range(num_frames):
        frame = np.zeros(n_len)
        seg = y[f * n_step : f * n_step + n_len]
        frame[: len(seg)] = seg  # rectangular window: no weighting
        power = np.abs(dft @ frame) ** 2 / nfft
        energy = power.sum() or np.finfo(float).eps
        logfb = np.log(np.maximum(fb @ power, np.finfo(float).eps))
        for c in range(ncep):
            scale = math.sqrt(1 / nfilt) if c == 0 else math.sqrt(2 / nfilt)
            cc = scale * sum(logfb[m] * math.cos(math.pi * c * (2 * m + 1) / (2 * nfilt)) for m in range(nfilt))
            out[f, c] = cc * (1 + lift / 2 * math.sin(math.pi * c / lift))
        out[f, 0] = math.log(energy)
    return out


def chirp(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return np.round(12000 * np.sin(2 * np.pi * (100 * t + 3000 * t**2))).astype(np.int16)


def test_mfcc_matches_reference_on_chirp():
    x = chirp(0.5).astype(np.float64)
    got = mfcc(x)
    want = reference_mfcc(x)
    assert got.shape == want.shape == (49, 13)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_mfcc_frame_count_is_100_hz():
    assert mfcc(chirp(1.0)).shape == (99, 13)  # 1 + ceil((16000 − 400) / 160)
    assert mfcc(chirp(2.0)).shape == (199, 13)
    assert mfcc(np.ones(300)).shape == (1, 13)  # shorter than a frame: one zero-padded frame


def test_audio_mfcc_uses_int16_scale():
    pcm = chirp(0.3)
    from_int = audio_mfcc(pcm)
    from_float = audio_mfcc(pcm.astype(np.float32) / 32768)
    assert from_int.shape == (13, 29) and from_int.dtype == np.float32
    np.testing.assert_array_equal(from_int, from_float)
    np.testing.assert_allclose(from_int, mfcc(pcm.astype(np.float64)).T.astype(np.float32))


# --------------------------------------------------------------------------- official evaluate, re-derived


def reference_evaluate(model, frames_rgb: np.ndarray, audio: np.ndarray, vshift: int = 15, batch_size: int = 20):
    """The official SyncNetInstance.evaluate + calc_pdist, step by step (BGR frames, int16-scale MFCC)."""
    im = np.transpose(frames_rgb[..., ::-1][None].astype(float), (0, 4, 1, 2, 3))  # [1, 3, F, H, W] BGR
    imtv = torch.from_numpy(im).float()
    pcm = np.clip(np.rint(audio.astype(np.float64) * 32768), -32768, 32767) if audio.dtype != np.int16 else audio
    cct = torch.from_numpy(mfcc(pcm.astype(np.float64)).T[None, None].astype(float)).float()
    min_length = min(len(frames_rgb), math.floor(len(audio) / 640))
    lastframe = min_length - 5
    im_feat, cc_feat = [], []
    with torch.inference_mode():
        for i in range(0, lastframe, batch_size):
            vf = range(i, min(lastframe, i + batch_size))
            im_feat.append(model.forward_lip(torch.cat([imtv[:, :, v : v + 5] for v in vf], 0)))
            cc_feat.append(model.forward_aud(torch.cat([cct[:, :, :, v * 4 : v * 4 + 20] for v in vf], 0)))
    im_feat, cc_feat = torch.cat(im_feat), torch.cat(cc_feat)
    win = 2 * vshift + 1
    padded = F.pad(cc_feat, (0, 0, vshift, vshift))
    dists = [F.pairwise_distance(im_feat[[i], :].repeat(win, 1), padded[i : i + win, :]) for i in range(len(im_feat))]
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return int(vshift - minidx), float(torch.median(mdist) - minval), float(minval), mdist.numpy()


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (12, 224, 224, 3), dtype=np.uint8)
    audio = (0.2 * rng.standard_normal(12 * 640 + 100)).astype(np.float32)
    return frames, audio


def test_score_clip_matches_official_evaluate(model, clip):
    frames, audio = clip
    scores = score_clip(model, frames, audio)
    offset, conf, min_dist, mdist = reference_evaluate(model, frames, audio)
    assert scores.num_windows == 12 - 5
    assert scores.mean_dists.shape == (31,)
    np.testing.assert_allclose(scores.mean_dists, mdist, rtol=0, atol=1e-5)
    assert scores.offset_frames == offset
    assert scores.confidence == pytest.approx(conf, abs=1e-5)
    assert scores.min_dist == pytest.approx(min_dist, abs=1e-5)


def test_batched_equals_unbatched_and_repeatable(model, clip):
    frames, audio = clip
    cc = audio_mfcc(audio)
    lip1, aud1 = embed_clip(model, frames, cc, 7, batch_size=1)
    lip3, aud3 = embed_clip(model, frames, cc, 7, batch_size=3)  # ragged last batch
    torch.testing.assert_close(lip1, lip3, rtol=0, atol=1e-5)
    torch.testing.assert_close(aud1, aud3, rtol=0, atol=1e-5)

    model.train()  # score_clip scores in eval mode and gives the caller's mode back
    a = score_clip(model, frames, audio, batch_size=20)
    assert model.training
    model.eval()
    b = score_clip(model, frames, audio, batch_size=20)
    np.testing.assert_array_equal(a.mean_dists, b.mean_dists)
    assert (a.offset_frames, a.confidence, a.min_dist) == (b.offset_frames, b.confidence, b.min_dist)
    c = score_clip(model, frames, audio, batch_size=2)
    np.testing.assert_allclose(a.mean_dists, c.mean_dists, rtol=0, atol=1e-5)


def test_score_clip_rejects_bad_inputs(model, clip):
    frames, audio = clip
    with pytest.raises(ValueError, match="25 fps"):
        score_clip(model, frames, audio, fps=30.0)
    with pytest.raises(ValueError, match="too short"):
        score_clip(model, frames[:5], audio)
    with pytest.raises(ValueError, match="too short"):
        score_clip(model, frames, audio[: 5 * 640 + 639])
    with pytest.raises(ValueError, match="224"):
        score_clip(model, frames[:, :100], audio)


# ---------------------------------------------------------------------------------------- offset search


class ShiftedStub:
    """Replaces the towers by embeddings that agree when audio window j = video window i − shift.

    Audio embedding: a fixed random projection of the MFCC window. Lip embedding: frame i carries its index
    as pixel value; the window starting there embeds the MFCC window i − shift with the same projection
    (or a random vector where that window does not exist).
    """

    def __init__(self, audio: np.ndarray, shift: int, num_windows: int):
        g = torch.Generator().manual_seed(5)
        self.proj = torch.randn(13 * 20, 64, generator=g) / 16
        self.cc = torch.from_numpy(audio_mfcc(audio))
        self.shift, self.num_windows = shift, num_windows
        self.outside = torch.randn(256, 64, generator=g)

    def aud(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.proj

    def lip(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for idx in x[:, 0, 0, 0, 0].round().long().tolist():
            j = idx - self.shift
            if 0 <= j < self.num_windows:
                out.append(self.cc[:, 4 * j : 4 * j + 20].reshape(-1) @ self.proj)
            else:
                out.append(self.outside[idx])
        return torch.stack(out)


@pytest.mark.parametrize("shift", [-7, 0, 5])
def test_offset_search_recovers_known_shift(model, monkeypatch, shift):
    num_frames = 40
    frames = np.broadcast_to(np.arange(num_frames, dtype=np.uint8)[:, None, None, None], (num_frames, 224, 224, 3))
    audio = (0.3 * np.random.default_rng(7).standard_normal(num_frames * 640)).astype(np.float32)
    stub = ShiftedStub(audio, shift, num_windows=num_frames - 5)
    monkeypatch.setattr(model, "forward_aud", stub.aud)
    monkeypatch.setattr(model, "forward_lip", stub.lip)

    scores = score_clip(model, np.ascontiguousarray(frames), audio)
    assert scores.offset_frames == shift
    assert scores.offset_ms == pytest.approx(40.0 * shift)
    assert scores.confidence > 0
    assert scores.min_dist == pytest.approx(float(scores.mean_dists[15 - shift]))
    # The official computation on the same stub gives the same curve (windows, padding, sign convention).
    _, _, _, mdist = reference_evaluate(model, np.ascontiguousarray(frames), audio)
    np.testing.assert_allclose(scores.mean_dists, mdist, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------- face crops


def reference_crop(frame: np.ndarray, box, cs: float = 0.4) -> np.ndarray:
    """run_pipeline.crop_video for one frame: pad the whole frame with 110, slice, resize."""
    import cv2

    bs = max(box[3] - box[1], box[2] - box[0]) / 2
    bsi = int(bs * (1 + 2 * cs))
    padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=(110, 110))
    my, mx = (box[1] + box[3]) / 2 + bsi, (box[0] + box[2]) / 2 + bsi
    face = padded[int(my - bs) : int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))]
    return cv2.resize(face, (224, 224))


def test_crop_faces_matches_official_crop():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    boxes = np.array([[100.0, 60.0, 180.0, 150.0], [0.0, 0.0, 50.5, 41.0], [250.3, 170.0, 330.0, 260.0]])
    crops = crop_faces(frames, boxes)
    assert crops.shape == (3, 224, 224, 3) and crops.dtype == np.uint8
    for frame, box, crop in zip(frames, boxes, crops):
        np.testing.assert_array_equal(crop, reference_crop(frame, box))
    assert (crops[1, :5, :5] == 110).all()  # a box at the corner: the crop runs into the grey padding


def test_crop_faces_places_face_centre():
    frame = np.zeros((1, 400, 500, 3), dtype=np.uint8)
    box = np.array([[200.0, 120.0, 300.0, 220.0]])  # centre (250, 170), half-size 50
    frame[0, 165:176, 245:256] = 255  # marker on the box centre
    crop = crop_faces(frame, box)[0, ..., 0].astype(float)
    rows, cols = np.nonzero(crop > 128)
    # Horizontally centred; vertically the crop starts one half-size above the centre: 224 / (2·1.4) = 80.
    assert cols.mean() == pytest.approx(112, abs=1.5)
    assert rows.mean() == pytest.approx(80, abs=1.5)


def test_smooth_boxes_median_filters_centre_and_size():
    boxes = np.tile([100.0, 80.0, 160.0, 160.0], (30, 1))  # w 60, h 80 → half-size 40, centre (130, 120)
    boxes[10] += 37.0  # one-frame jump
    smoothed = smooth_boxes(boxes)
    np.testing.assert_allclose(smoothed, np.tile([90.0, 80.0, 170.0, 160.0], (30, 1)))
    crops_a = crop_faces(np.zeros((30, 300, 300, 3), np.uint8), smoothed)
    assert crops_a.shape == (30, 224, 224, 3)
