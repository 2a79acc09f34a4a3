"""CLIP-I (AnyExpress A.2.2): a transformers CLIP folder, face crops from landmarks, cosine to the reference."""

import numpy as np
import pytest

from eval.metrics import MetricSuite, MetricWeights
from eval.metrics.clip_image import clip_i, face_crops, load_clip


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A randomly initialised CLIP vision encoder and image processor saved as transformers saves them."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("clip")
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def faces(seed: int, count: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Frames with a textured square 'face' and landmarks on its corners (NaN: the last frame has none)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 40, (count, 64, 80, 3), dtype=np.uint8)
    frames[:, 16:48, 24:56] = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    lm = np.tile(np.array([[24.0, 16.0], [56.0, 16.0], [24.0, 48.0], [56.0, 48.0]]), (count, 1, 1))
    lm[-1] = np.nan
    return frames, lm


def test_clip_i_is_the_mean_cosine_of_face_crops_to_the_reference(clip_folder):
    encoder = load_clip(clip_folder)
    frames, lm = faces(0)
    crops, kept = face_crops(frames, lm)
    assert kept.tolist() == [0, 1] and crops[0].shape == (44, 44, 3)  # 32 px grown by 20 % a side
    # A video of the reference itself scores 1 on every frame with a face.
    same = np.repeat(frames[:1], 3, axis=0)
    assert clip_i(encoder, same, lm, frames[0], lm[0]) == pytest.approx(1.0, abs=1e-6)
    other, _ = faces(1)
    emb = encoder(face_crops(other, lm)[0] + face_crops(frames[:1], lm[:1])[0])
    cos = emb[:2] @ emb[2] / np.linalg.norm(emb[:2], axis=1) / np.linalg.norm(emb[2])
    assert clip_i(encoder, other, lm, frames[0], lm[0]) == pytest.approx(cos.mean(), rel=1e-6) and cos.mean() < 1
    with pytest.raises(ValueError, match="no face in the reference"):
        clip_i(encoder, frames, lm, frames[0], lm[-1])


def test_the_suite_names_the_clip_folder_it_lacks_and_refuses_a_foreign_one(tmp_path, clip_folder):
    noise = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    out = MetricSuite(MetricWeights())(noise, noise, None, 25.0)
    assert out["clip_i"] is None and "TALKDIT_CLIP" in out.skipped["clip_i"]
    (tmp_path / "config.json").write_text("{}")
    out = MetricSuite(MetricWeights(clip=tmp_path))(noise, noise, None, 25.0)
    assert out["clip_i"] is None and str(tmp_path) in out.skipped["clip_i"]
    out = MetricSuite(MetricWeights(clip=clip_folder))(noise, noise, None, 25.0)
    assert out["clip_i"] is None and "face" in out.skipped["clip_i"]  # noise has no face: skipped, not guessed
