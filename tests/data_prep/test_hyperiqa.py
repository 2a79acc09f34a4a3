"""HyperIQA: official key layout, checkpoint loading errors, batched target network, clip scoring protocol."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image

from data_prep.models.hyperiqa import KONIQ_ARGS, HyperNet, apply_target_net, load_hyperiqa
from data_prep.models.hyperiqa_scoring import sample_frame_indices, score_frames


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """Any weight download (torchvision pretrained=True, torch.hub) fails the test instead of running."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a weight download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(scope="module")
def model() -> HyperNet:
    torch.manual_seed(0)
    return HyperNet(*KONIQ_ARGS).eval()


def textured_clip(num_frames: int, height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """Multi-scale noise texture, shifted per frame so every frame differs."""
    rng = np.random.default_rng(seed)
    base = np.zeros((height * 2, width * 2, 3), np.float32)
    for scale in (4, 16, 64):
        small = rng.normal(size=(height * 2 // scale + 1, width * 2 // scale + 1, 3)).astype(np.float32)
        base += cv2.resize(small, (width * 2, height * 2), interpolation=cv2.INTER_CUBIC)
    base = (base - base.min()) / (base.max() - base.min()) * 255
    frames = [base[i : i + height, 2 * i : 2 * i + width] for i in range(num_frames)]
    return np.stack(frames).round().astype(np.uint8)


# --- the official key set -------------------------------------------------------------------------------


def official_key_shapes() -> dict[str, tuple[int, ...]]:
    """Key → shape of the official koniq_pretrained.pkl, written from SSL92/hyperIQA models.py by hand.

    Backbone: torchvision's ResNet-50 state dict without ``fc`` (the official ResNetBackbone has no
    avgpool/fc), under ``res.``, plus the LDA branches; then the hyper-network heads of HyperNet(16, 112, 224,
    112, 56, 28, 14, 7): weight convs produce in*out/7² channels.
    """
    resnet = torchvision.models.resnet50(weights=None).state_dict()
    table = {f"res.{k}": tuple(v.shape) for k, v in resnet.items() if not k.startswith("fc.")}
    table.update(
        {
            "res.lda1_pool.0.weight": (16, 256, 1, 1),
            "res.lda1_fc.weight": (16, 16 * 64),
            "res.lda1_fc.bias": (16,),
            "res.lda2_pool.0.weight": (32, 512, 1, 1),
            "res.lda2_fc.weight": (16, 32 * 16),
            "res.lda2_fc.bias": (16,),
            "res.lda3_pool.0.weight": (64, 1024, 1, 1),
            "res.lda3_fc.weight": (16, 64 * 4),
            "res.lda3_fc.bias": (16,),
            "res.lda4_fc.weight": (224 - 3 * 16, 2048),
            "res.lda4_fc.bias": (224 - 3 * 16,),
            "conv1.0.weight": (1024, 2048, 1, 1),
            "conv1.0.bias": (1024,),
            "conv1.2.weight": (512, 1024, 1, 1),
            "conv1.2.bias": (512,),
            "conv1.4.weight": (112, 512, 1, 1),
            "conv1.4.bias": (112,),
        }
    )
    sizes = [224, 112, 56, 28, 14]
    for k in range(1, 5):
        channels = sizes[k - 1] * sizes[k] // 49
        table[f"fc{k}w_conv.weight"] = (channels, 112, 3, 3)
        table[f"fc{k}w_conv.bias"] = (channels,)
        table[f"fc{k}b_fc.weight"] = (sizes[k], 112)
        table[f"fc{k}b_fc.bias"] = (sizes[k],)
    table.update({"fc5w_fc.weight": (14, 112), "fc5w_fc.bias": (14,), "fc5b_fc.weight": (1, 112), "fc5b_fc.bias": (1,)})
    return table


def test_state_dict_equals_official_key_set(model):
    expected = official_key_shapes()
    found = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(found) - set(expected)) == []
    assert sorted(set(expected) - set(found)) == []
    assert {k: v for k, v in found.items() if expected[k] != v} == {}
    assert (found["fc1w_conv.weight"], found["fc4w_conv.weight"]) == ((512, 112, 3, 3), (8, 112, 3, 3))


def test_constructor_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="divisible"):
        HyperNet(16, 112, 224, 100, 56, 28, 14, 7)


def test_official_layout_file_loads_strict(model, tmp_path):
    path = tmp_path / "koniq_pretrained.pkl"
    torch.save(model.state_dict(), path)
    loaded = load_hyperiqa(path)
    assert not loaded.training
    reference = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key
    crop = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(loaded.score(crop), model.score(crop))


def test_file_without_batchnorm_counters_loads(model, tmp_path):
    # Checkpoints written by PyTorch < 0.4.1 have no num_batches_tracked buffers.
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pkl")
    load_hyperiqa(tmp_path / "old.pkl")


def test_missing_file_names_file_and_source(tmp_path):
    path = tmp_path / "pretrained" / "koniq_pretrained.pkl"
    with pytest.raises(FileNotFoundError) as info:
        load_hyperiqa(path)
    message = str(info.value)
    assert str(path) in message and "koniq_pretrained.pkl" in message
    assert "SSL92/hyperIQA" in message and "drive.google.com" in message


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("shape", "fc2w_conv.weight"),
        ("missing", "res.lda3_fc.bias"),
        ("unexpected", "res.fc.weight"),
    ],
)
def test_mismatched_file_names_first_differing_key(model, tmp_path, edit, named):
    state = dict(model.state_dict())
    if edit == "shape":
        state["fc2w_conv.weight"] = torch.zeros(127, 112, 3, 3)
    elif edit == "missing":
        del state["res.lda3_fc.bias"]
    else:
        state["res.fc.weight"] = torch.zeros(1000, 2048)  # an ImageNet head the official backbone lacks
    torch.save(state, tmp_path / "bad.pkl")
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        load_hyperiqa(tmp_path / "bad.pkl")


def test_non_state_dict_file_is_value_error(tmp_path):
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.pkl"):
        load_hyperiqa(tmp_path / "junk.pkl")
    torch.save([torch.zeros(1)], tmp_path / "list.pkl")
    with pytest.raises(ValueError, match="state dict"):
        load_hyperiqa(tmp_path / "list.pkl")


# --- weight generation and the target network -----------------------------------------------------------


def random_target_params(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Target-net parameters in the official output shapes, scaled so the sigmoids are not saturated."""
    g = torch.Generator().manual_seed(seed)
    sizes = [224, 112, 56, 28, 14, 1]
    params = {"target_in_vec": torch.randn(batch, 224, 1, 1, generator=g)}
    for k in range(1, 6):
        fan_in, fan_out = sizes[k - 1], sizes[k]
        params[f"target_fc{k}w"] = torch.randn(batch, fan_out, fan_in, 1, 1, generator=g) / fan_in**0.5
        params[f"target_fc{k}b"] = torch.randn(batch, fan_out, generator=g) * 0.5
    return params


def per_sample_reference(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """One explicit MLP per sample: linear layers built from that sample's generated weights."""
    scores = []
    for b in range(params["target_in_vec"].shape[0]):
        h = params["target_in_vec"][b].flatten()
        for k in range(1, 6):
            h = F.linear(h, params[f"target_fc{k}w"][b].flatten(1), params[f"target_fc{k}b"][b])
            if k < 5:
                h = torch.sigmoid(h)
        scores.append(h[0])
    return torch.stack(scores)


def grouped_conv_reference(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The official TargetFC trick: all samples in one grouped 1×1 convolution per layer."""
    x = params["target_in_vec"]
    batch = x.shape[0]
    for k in range(1, 6):
        w, bias = params[f"target_fc{k}w"], params[f"target_fc{k}b"]
        x = F.conv2d(x.reshape(1, -1, 1, 1), w.reshape(-1, w.shape[2], 1, 1), bias.reshape(-1), groups=batch)
        x = x.reshape(batch, w.shape[1], 1, 1)
        if k < 5:
            x = torch.sigmoid(x)
    return x.flatten()


def test_batched_target_net_equals_per_sample_loop():
    params = random_target_params(batch=5)
    batched = apply_target_net(params)
    assert batched.shape == (5,)
    torch.testing.assert_close(batched, per_sample_reference(params), atol=1e-5, rtol=0)
    torch.testing.assert_close(batched, grouped_conv_reference(params), atol=1e-5, rtol=0)
    assert batched.std() > 0.05  # the comparison is not between saturated constants


def test_generated_weights_follow_official_layout(model):
    """Matrix entry (o, i) of target fc k is flat element o*in + i of the fc{k}w_conv output map."""
    crops = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        params = model(crops)
        backbone = model.res(crops)
        hyper = model.conv1(backbone["hyper_in_feat"])
        pooled = hyper.mean(dim=(2, 3))
        fc1_map = model.fc1w_conv(hyper)  # [2, 512, 7, 7]
        fc3_bias, fc5_weight = model.fc3b_fc(pooled), model.fc5w_fc(pooled)
        scores = model.score(crops)
    assert hyper.shape == (2, 112, 7, 7)
    assert params["target_in_vec"].shape == (2, 224, 1, 1)
    assert params["target_fc1w"].shape == (2, 112, 224, 1, 1)
    assert params["target_fc5w"].shape == (2, 1, 14, 1, 1) and params["target_fc5b"].shape == (2, 1)
    flat = fc1_map.flatten(1)
    for o, i in [(0, 0), (0, 223), (1, 0), (57, 101), (111, 223)]:
        assert params["target_fc1w"][1, o, i, 0, 0] == flat[1, o * 224 + i]
    assert params["target_fc1w"][0, 0, 48, 0, 0] == fc1_map[0, 0, 6, 6]  # channel 0 supplies entries 0…48
    torch.testing.assert_close(params["target_fc3b"], fc3_bias)
    torch.testing.assert_close(params["target_fc5w"].flatten(1), fc5_weight)
    torch.testing.assert_close(params["target_in_vec"].flatten(1), backbone["target_in_vec"])
    torch.testing.assert_close(scores, per_sample_reference(params), atol=1e-5, rtol=0)


def test_forward_rejects_other_crop_sizes(model):
    with pytest.raises(ValueError, match="224"):
        model(torch.zeros(1, 3, 112, 112))


# --- clip scoring protocol -------------------------------------------------------------------------------


def test_frame_indices_are_segment_centres():
    assert sample_frame_indices(121, 8).tolist() == [7, 22, 37, 52, 68, 83, 98, 113]
    assert sample_frame_indices(12, 3).tolist() == [2, 6, 10]
    assert sample_frame_indices(3, 8).tolist() == [0, 1, 2]  # short clip: every frame once
    with pytest.raises(ValueError):
        sample_frame_indices(0, 8)


def test_score_frames_uses_documented_frames_and_crops(model):
    """The crops fed to the network equal torchvision's official transform at the documented positions."""
    clip = textured_clip(12)
    seen = []
    handle = model.res.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        result = score_frames(model, clip, num_frames=3, crops_per_frame=2, seed=7, batch_size=4)
    finally:
        handle.remove()
    fed = torch.cat(seen)

    offsets = np.random.default_rng(7).integers(0, (512 - 224 + 1, 384 - 224 + 1), size=(3, 2, 2))
    expected = []
    for frame_index, frame_offsets in zip([2, 6, 10], offsets):
        resized = TF.resize(Image.fromarray(clip[frame_index]), [512, 384])  # = transforms.Resize((512, 384))
        assert resized.size == (384, 512)  # PIL reports (width, height)
        for top, left in frame_offsets:
            crop = TF.to_tensor(TF.crop(resized, int(top), int(left), 224, 224))
            expected.append(TF.normalize(crop, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    torch.testing.assert_close(fed, torch.stack(expected), atol=1e-6, rtol=0)

    assert result.protocol["frame_indices"] == [2, 6, 10]
    assert result.protocol["crop_offsets"] == offsets.tolist()
    assert result.protocol["resize_hw"] == [512, 384] and result.protocol["crop_size"] == 224
    assert result.crop_scores.shape == (3, 2) and result.frame_scores.shape == (3,)
    np.testing.assert_allclose(result.frame_scores, result.crop_scores.mean(axis=1))
    assert result.score == pytest.approx(result.frame_scores.mean())


def test_score_frames_deterministic_and_batch_independent(model):
    clip = textured_clip(10, seed=1)
    first = score_frames(model, clip, num_frames=2, crops_per_frame=2, seed=3, batch_size=4)
    again = score_frames(model, clip, num_frames=2, crops_per_frame=2, seed=3, batch_size=4)
    np.testing.assert_array_equal(first.crop_scores, again.crop_scores)
    assert first.protocol == again.protocol

    one_by_one = score_frames(model, clip, num_frames=2, crops_per_frame=2, seed=3, batch_size=1)
    np.testing.assert_allclose(one_by_one.crop_scores, first.crop_scores, atol=1e-4, rtol=1e-5)

    other_seed = score_frames(model, clip, num_frames=2, crops_per_frame=2, seed=4, batch_size=4)
    assert other_seed.protocol["crop_offsets"] != first.protocol["crop_offsets"]
    assert not np.allclose(other_seed.crop_scores, first.crop_scores)


def test_degraded_copy_scores_differently(model):
    clip = textured_clip(4, seed=2)
    rng = np.random.default_rng(0)
    degraded = np.stack([cv2.GaussianBlur(frame, (0, 0), sigmaX=3) for frame in clip]).astype(np.float32)
    degraded = np.clip(degraded + rng.normal(0, 12, degraded.shape), 0, 255).astype(np.uint8)
    original = score_frames(model, clip, num_frames=2, crops_per_frame=2, seed=0)
    worse = score_frames(model, degraded, num_frames=2, crops_per_frame=2, seed=0)
    # Random weights: which one is better is meaningless, but the same crops of different pixels must differ.
    assert original.protocol["crop_offsets"] == worse.protocol["crop_offsets"]
    assert np.all(np.abs(original.crop_scores - worse.crop_scores) > 1e-4)
    assert np.isfinite(worse.score) and worse.score != original.score


def test_score_frames_restores_mode_and_validates(model):
    clip = textured_clip(2, seed=3)
    in_eval = score_frames(model, clip, num_frames=2, crops_per_frame=1)
    model.train()
    try:
        # Scoring switches to eval (BatchNorm running statistics, as the official test code does) and back.
        in_train = score_frames(model, clip, num_frames=2, crops_per_frame=1)
        assert model.training
        np.testing.assert_array_equal(in_train.crop_scores, in_eval.crop_scores)
    finally:
        model.eval()
    with pytest.raises(ValueError, match="uint8"):
        score_frames(model, np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        score_frames(model, np.zeros((0, 64, 64, 3), np.uint8))
