"""The VAE's compression factors come from ``model.vae``: buckets, latent shapes and sample sizes follow them."""

import pytest

from eval.config import check_size, sample_size
from tests.train.conftest import tiny_overrides
from trainer.config.compose import load_train_config
from trainer.config.errors import ConfigError
from trainer.data.buckets import Compression, make_buckets


def test_ltx_factors_from_the_config():
    cfg = load_train_config(tiny_overrides("x/*.tar", "/tmp/run"))
    c = Compression.of(cfg.model.vae)
    assert c == Compression(32, 8)
    assert c.latent_frames(121) == 16 and c.video_frames(16) == 121 and c.latent_frames(1) == 1


def test_buckets_follow_another_vaes_factors():
    ltx = make_buckets(24576, 0.2, 0.4, 121, Compression(32, 8))
    other = make_buckets(24576, 0.2, 0.4, 121, Compression(16, 4))
    assert ltx and other
    for b in ltx:
        assert b.height % 32 == 0 and b.width % 32 == 0 and b.video_frames == 8 * (b.latent_frames - 1) + 1
        assert b.tokens == 24576 and b.latent_frames <= 16
    for b in other:
        # 16 px per token: four times the tokens per frame at a given size, so fewer frames per sample.
        assert b.height % 16 == 0 and b.width % 16 == 0 and b.video_frames == 4 * (b.latent_frames - 1) + 1
        assert b.tokens == 24576 and b.tokens_per_frame == (b.height // 16) * (b.width // 16)
        assert b.latent_frames <= 31
    # At 512x512, 256 LTX tokens per frame allow 16 latent frames x 6 samples; 1,024 tokens allow 24 x 1.
    assert {b.name for b in ltx if (b.height, b.width) == (512, 512)} == {"512x512x16@6"}
    assert {b.name for b in other if (b.height, b.width) == (512, 512)} == {"512x512x24@1"}


def test_sample_sizes_and_size_options_follow_the_spatial_factor():
    assert sample_size(60, 100, 0.004, 0.004, 32) == (64, 64)
    assert sample_size(60, 100, 0.004, 0.004, 16) == (48, 80)  # closer to the clip's aspect on a finer grid
    check_size([48, 80], 16)
    with pytest.raises(ConfigError, match=r"expected multiples of 32, the VAE's spatial factor"):
        check_size([48, 80], 32)
    with pytest.raises(ConfigError, match="both positive"):
        check_size([0, 64])
