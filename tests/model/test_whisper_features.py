"""Whisper features: shapes, 30 s chunking, trimming, hidden-state stacking, loading, resampling."""

import math

import numpy as np
import pytest
import torch

from trainer.model.whisper_features import (
    WhisperArch,
    WhisperFeatureExtractor,
    WhisperFeaturesConfig,
    tiny_whisper_arch,
)

SR = 16000
CHUNK = 30 * SR


def speechlike(seconds: float, sample_rate: int = SR, seed: int = 0) -> np.ndarray:
    """Noise plus a wandering tone, so every 30 s window has structure the encoder can tell apart."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * (220 + 80 * np.sin(2 * np.pi * 0.7 * t)) * t)
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def expected_frames(num_samples: int) -> int:
    return math.ceil(num_samples / 320)


def tiny_config(**overrides) -> WhisperFeaturesConfig:
    kwargs = {"random_init": True, "arch": tiny_whisper_arch(), "batch_chunks": 2}
    kwargs.update(overrides)
    return WhisperFeaturesConfig(**kwargs)


@pytest.fixture(scope="module")
def tiny() -> WhisperFeatureExtractor:
    # batch_chunks=2 so that 65 s (3 chunks) spans two encoder forwards.
    return WhisperFeatureExtractor.from_config(tiny_config())


# ---- geometry ------------------------------------------------------------------------------------------


def test_properties_and_frozen(tiny):
    assert tiny.num_hidden_states == 5  # 4 blocks + embedding output
    assert tiny.hidden_size == 32
    assert tiny.frame_rate == 50.0
    assert tiny.sample_rate == 16000
    assert tiny.chunk_samples == CHUNK
    assert not any(p.requires_grad for p in tiny.parameters())
    parent = torch.nn.Sequential(tiny)
    parent.train()
    assert not tiny.training and not tiny.encoder.training


@pytest.mark.parametrize("seconds", [0.5, 30.0, 31.0, 65.0])
def test_shape_and_dtype(tiny, seconds):
    audio = speechlike(seconds)
    feats = tiny.encode(audio)
    assert feats.shape == (expected_frames(audio.shape[0]), 5, 32)
    assert feats.dtype == torch.float32
    assert feats.device.type == "cpu"
    assert torch.isfinite(feats).all()


def test_odd_lengths_round_up(tiny):
    # 321 samples need a second 50 Hz frame; 480001 samples need a second chunk with one frame.
    assert tiny.encode(speechlike(321 / SR)).shape[0] == 2
    assert tiny.encode(speechlike((CHUNK + 1) / SR)).shape[0] == 1501
    assert tiny.num_frames(320) == 1 and tiny.num_frames(321) == 2


def test_whisper_small_defaults():
    arch = WhisperArch()
    assert (arch.d_model, arch.encoder_layers, arch.encoder_attention_heads, arch.encoder_ffn_dim) == (
        768,
        12,
        12,
        3072,
    )
    assert (arch.num_mel_bins, arch.max_source_positions) == (80, 1500)
    cfg = WhisperFeaturesConfig()
    assert cfg.path is None and not cfg.random_init and cfg.dtype == "float32" and cfg.batch_chunks == 8


# ---- chunking and trimming -----------------------------------------------------------------------------


def test_chunks_are_independent_30s_windows(tiny):
    clip = speechlike(40.0)
    feats = tiny.encode(clip)
    first = tiny.encode(clip[:CHUNK])
    rest = tiny.encode(clip[CHUNK:])
    assert feats.shape[0] == first.shape[0] + rest.shape[0] == 2000
    torch.testing.assert_close(feats[:1500], first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats[1500:], rest, atol=1e-5, rtol=1e-5)


def test_trim_happens_after_encoding_the_padded_window(tiny):
    clip = speechlike(0.5)
    feats = tiny.encode(clip)
    padded = np.zeros(CHUNK, dtype=np.float32)
    padded[: clip.shape[0]] = clip
    full = tiny.encode(padded)
    assert full.shape[0] == 1500
    torch.testing.assert_close(feats, full[: feats.shape[0]], atol=1e-5, rtol=1e-5)
    # Self-attention mixes the whole window, so the tail frames (silence) carry information too: the
    # comparison above is not trivially satisfied by per-frame features.
    assert not torch.allclose(full[-1, 1:], full[-2, 1:])


def test_batching_does_not_change_features():
    audio = speechlike(65.0, seed=3)
    one = WhisperFeatureExtractor(tiny_config(batch_chunks=1)).encode(audio)
    many = WhisperFeatureExtractor(tiny_config(batch_chunks=8)).encode(audio)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-5)


# ---- every hidden state, in order ----------------------------------------------------------------------


def test_hidden_states_stacked_in_order(tiny):
    from transformers import WhisperFeatureExtractor as HFWhisperFeatureExtractor

    clip = speechlike(3.3, seed=1)
    feats = tiny.encode(clip)
    length = expected_frames(clip.shape[0])

    # Mel input built independently of the module, with Whisper's standard front end.
    front_end = HFWhisperFeatureExtractor(
        feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400
    )
    mel = front_end(clip, sampling_rate=16000, return_tensors="pt").input_features
    assert mel.shape == (1, 80, 3000)
    with torch.no_grad():
        out = tiny.encoder(mel, output_hidden_states=True)
        last = tiny.encoder(mel).last_hidden_state
        enc = tiny.encoder
        embedding = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(mel))))
        embedding = embedding.permute(0, 2, 1) + enc.embed_positions.weight

    assert len(out.hidden_states) == tiny.num_hidden_states == feats.shape[1]
    for b, hidden in enumerate(out.hidden_states):
        torch.testing.assert_close(feats[:, b], hidden[0, :length], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats[:, 0], embedding[0, :length], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats[:, -1], last[0, :length], atol=1e-5, rtol=1e-5)
    # Distinct states, so a swapped order could not pass the comparisons above.
    for b in range(1, feats.shape[1]):
        assert not torch.allclose(feats[:, b], feats[:, b - 1])


# ---- input handling ------------------------------------------------------------------------------------


def test_tensor_and_float64_inputs_match_numpy(tiny):
    clip = speechlike(1.0, seed=2)
    ref = tiny.encode(clip)
    torch.testing.assert_close(tiny.encode(torch.from_numpy(clip)), ref, atol=0, rtol=0)
    torch.testing.assert_close(tiny(clip.astype(np.float64)), ref, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("audio", "match"),
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros((2, 1600), dtype=np.float32), "1-D"),
        (np.array([0.0, np.nan, 0.1], dtype=np.float32), "non-finite"),
        (np.array([0.0, np.inf, 0.1], dtype=np.float32), "non-finite"),
        (np.zeros(1600, dtype=np.int16), "floating point"),
        (torch.zeros(1, 1600), "1-D"),
    ],
)
def test_bad_audio_rejected(tiny, audio, match):
    with pytest.raises(ValueError, match=match):
        tiny.encode(audio)


def test_bad_sample_rate_rejected(tiny):
    with pytest.raises(ValueError, match="sample_rate"):
        tiny.encode(speechlike(0.1), sample_rate=0)


@pytest.mark.parametrize("sample_rate", [8000, 44100])
def test_other_rates_are_refused_not_resampled(tiny, sample_rate):
    # One resampler for the project (data_prep.audio): Whisper must not quietly resample with another one.
    with pytest.raises(ValueError, match=f"16000 Hz, got sample_rate={sample_rate}.*data_prep.audio"):
        tiny.encode(speechlike(0.5, sample_rate=sample_rate), sample_rate=sample_rate)


# ---- building and loading ------------------------------------------------------------------------------


def test_random_init_is_seeded():
    clip = speechlike(0.4)
    a = WhisperFeatureExtractor(tiny_config(seed=0)).encode(clip)
    b = WhisperFeatureExtractor(tiny_config(seed=0)).encode(clip)
    c = WhisperFeatureExtractor(tiny_config(seed=1)).encode(clip)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_bfloat16_returns_float32(tiny):
    clip = speechlike(0.7)
    feats = WhisperFeatureExtractor(tiny_config(dtype="bfloat16")).encode(clip)
    assert feats.dtype == torch.float32 and feats.shape == tiny.encode(clip).shape


def test_save_and_load_roundtrip(tiny, tmp_path):
    folder = tiny.save_pretrained(tmp_path / "whisper")
    assert {p.name for p in folder.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    }
    loaded = WhisperFeatureExtractor.from_config(WhisperFeaturesConfig(path=str(folder)))
    assert loaded.source == str(folder)
    clip = speechlike(31.0, seed=5)
    assert torch.equal(loaded.encode(clip), tiny.encode(clip))
    # A differently seeded encoder differs, so the equality above means the weights were really loaded.
    other = WhisperFeatureExtractor(tiny_config(seed=7))
    assert not torch.allclose(other.encode(clip[:8000]), tiny.encode(clip[:8000]))


def test_checkpoint_keys_use_the_openai_layout(tiny, tmp_path):
    from safetensors import safe_open

    tiny.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.encoder.conv1.weight" in keys
    assert "model.encoder.layers.3.fc2.weight" in keys
    assert all(k.startswith("model.encoder.") for k in keys)


def test_load_pytorch_bin_without_preprocessor_config(tiny, tmp_path):
    from safetensors.torch import load_file

    tiny.save_pretrained(tmp_path)
    torch.save(load_file(str(tmp_path / "model.safetensors")), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "preprocessor_config.json").unlink()
    loaded = WhisperFeatureExtractor(WhisperFeaturesConfig(path=str(tmp_path)))
    clip = speechlike(1.1, seed=6)
    assert torch.equal(loaded.encode(clip), tiny.encode(clip))


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors") as err:
        WhisperFeatureExtractor(WhisperFeaturesConfig(path=str(tmp_path / "absent")))
    assert "whisper-small" in str(err.value) and "absent" in str(err.value)


def test_missing_weight_file(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors") as err:
        WhisperFeatureExtractor(WhisperFeaturesConfig(path=str(tmp_path)))
    assert "https://huggingface.co/openai/whisper-small" in str(err.value)


def test_missing_config(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json") as err:
        WhisperFeatureExtractor(WhisperFeaturesConfig(path=str(tmp_path)))
    assert "whisper-small" in str(err.value)


def test_checkpoint_without_encoder_tensors_is_refused(tiny, tmp_path):
    from safetensors.torch import save_file

    tiny.save_pretrained(tmp_path)
    # Encoder tensors under names transformers cannot map: loading must fail, not fall back to random.
    save_file(
        {f"whatever.{k}": v.contiguous() for k, v in tiny.encoder.state_dict().items()},
        str(tmp_path / "model.safetensors"),
    )
    with pytest.raises(RuntimeError, match="encoder tensors"):
        WhisperFeatureExtractor(WhisperFeaturesConfig(path=str(tmp_path)))


def test_neither_path_nor_random_init():
    with pytest.raises(ValueError, match="random_init"):
        WhisperFeatureExtractor(WhisperFeaturesConfig())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": "/x", "random_init": True}, "exclusive"),
        ({"random_init": True, "dtype": "float64"}, "dtype"),
        ({"random_init": True, "batch_chunks": 0}, "batch_chunks"),
    ],
)
def test_invalid_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WhisperFeaturesConfig(**kwargs)


def test_invalid_arch():
    with pytest.raises(ValueError, match="max_source_positions"):
        WhisperArch(max_source_positions=448)
    with pytest.raises(ValueError, match="divisible"):
        WhisperArch(d_model=30, encoder_attention_heads=4)


def test_structured_config_roundtrip():
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(WhisperFeaturesConfig)
    cfg.merge_with({"random_init": True, "arch": {"d_model": 64, "encoder_attention_heads": 4}})
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, WhisperFeaturesConfig) and isinstance(obj.arch, WhisperArch)
    assert obj.arch.d_model == 64 and obj.path is None


def test_demo_encoder_features_follow_the_audio():
    # The demo's random encoder stands in for Whisper: its features must change with what is said, not only
    # with the row (positional embeddings). At transformers' init_std 0.02 the audio moved them by ~1 % of their
    # spread (share 0.0002) and the demo's adapter learned nothing from them.
    from data_prep.run import load_config

    cfg = load_config(["input_dir=unused", "output_dir=unused", "audio=tiny"])
    extractor = WhisperFeatureExtractor.from_config(cfg.audio.encoder)
    t = np.arange(2 * SR) / SR
    clips = []
    for k in range(4):
        envelope = np.clip(np.sin(2 * np.pi * (2.0 + k) * t + k), 0, None)
        clips.append((0.4 * envelope * np.sin(2 * np.pi * (150 + 60 * k) * t)).astype(np.float32))
    x = torch.stack([extractor.encode(c).flatten(1) for c in clips]).double()  # [K, L, B*C]
    total = x.flatten(0, 1).var(dim=0).sum()
    within = (x - x.mean(dim=0, keepdim=True)).flatten(0, 1).var(dim=0).sum()
    assert within / total > 0.1
