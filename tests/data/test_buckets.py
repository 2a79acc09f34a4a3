"""Buckets at the paper's token budget: the exact grid plus ladders for the common video shapes."""

import math
from pathlib import Path

import pytest

from tests.train.conftest import tiny_overrides
from trainer.config.compose import compose_config, load_train_config
from trainer.config.errors import ConfigError
from trainer.data.buckets import Compression, bucket_table, buckets_for, choose_bucket, make_buckets, parse_aspect
from trainer.runner import data_layout

LTX = Compression(32, 8)
ASPECTS = ["16:9", "9:16", "4:3", "3:4", "1:1"]
README = Path(__file__).resolve().parents[2] / "README.md"


def paper_buckets():
    cfg = compose_config("train", ["experiment=edityourself_stage1"])
    return cfg.data, buckets_for(cfg.data, Compression.of(cfg.model.vae))


def test_every_common_shape_has_buckets_from_a_quarter_to_two_megapixels():
    data, buckets = paper_buckets()
    assert data.tokens_per_batch == 24576 and (data.min_megapixels, data.max_megapixels) == (0.25, 2.0)
    for aspect in ASPECTS:
        ratio = parse_aspect(aspect)
        areas = sorted(b.height * b.width / 1e6 for b in buckets if abs(math.log(b.height / b.width / ratio)) < 0.03)
        assert areas[0] <= 0.3 and areas[-1] >= 1.8, (aspect, areas)
        # √2 rungs, each size within a quarter step of its rung: neighbours at most 1.41 · 1.09 / 0.92 apart
        assert all(b / a <= 1.7 for a, b in zip(areas, areas[1:], strict=False)), (aspect, areas)
    for b in buckets:
        assert b.height % 32 == 0 and b.width % 32 == 0 and (b.video_frames - 1) % 8 == 0
        assert 0.25 <= b.height * b.width / 1e6 <= 2.0
        assert (1 - data.bucket_tolerance) * 24576 <= b.tokens <= 24576, b.name
        assert b.latent_frames >= 8, b.name  # half the longest clip at least: no batch of stills
    assert len({(b.height, b.width) for b in buckets}) == len(buckets)
    # w:h and h:w get mirrored sizes.
    shapes = {(b.height, b.width, b.latent_frames, b.batch_size) for b in buckets}
    assert shapes == {(w, h, t, n) for h, w, t, n in shapes}


def test_without_tolerance_the_buckets_are_the_exact_grid():
    exact = make_buckets(24576, 0.25, 2.0, 121, LTX)
    assert len(exact) == 20 and all(b.tokens == 24576 for b in exact)
    assert make_buckets(24576, 0.25, 2.0, 121, LTX, ASPECTS, 0.0) == exact
    with_ladders = make_buckets(24576, 0.25, 2.0, 121, LTX, ASPECTS, 0.05)
    assert set(exact) < set(with_ladders)


def test_a_phone_video_lands_in_a_nine_by_sixteen_bucket():
    _, buckets = paper_buckets()
    for area in (0.3, 0.5, 1.0, 1.9):
        b = choose_bucket(buckets, area, 1920 / 1080, 16)
        assert abs(math.log(b.height / b.width / (16 / 9))) < 0.03, (area, b.name)
        assert abs(math.log(b.height * b.width / 1e6 / area)) < 0.35, (area, b.name)


def test_the_readme_table_is_the_paper_configs_buckets():
    data, buckets = paper_buckets()
    assert bucket_table(buckets, data.tokens_per_batch) in README.read_text()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.bucket_aspects=[16x9]", "data.bucket_aspects"),
        ("data.bucket_aspects=[0:9]", "data.bucket_aspects"),
        ("data.bucket_tolerance=0.7", "data.bucket_tolerance"),
        ("data.bucket_aspects=[inf:1]", "data.bucket_aspects"),
        ("stage.p_ref_drop=0.15", "stage.p_ref_drop"),  # the smoke stage adds no identity references
        ("stage.ref_follows_audio=true", "stage.ref_follows_audio"),
        ("stage.p_frame_ref=0.5 data.max_frames=9", "stage.p_frame_ref"),  # 2 latent frames: no block between
    ],
)
def test_bad_bucket_and_condition_options_name_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_train_config(["experiment=smoke", f"data.shards={tmp_path}/x.tar", *override.split()])


def test_runs_without_ladder_buckets_keep_the_resume_layout_they_had(simple_shards, tmp_path):
    # Checkpoints written before the ladders existed record no bucket list; a run whose buckets are still the
    # exact grid must resume from them, one whose buckets changed must not.
    exact = load_train_config(tiny_overrides(simple_shards, tmp_path, 1))
    assert "aspect_buckets" not in data_layout(exact)
    ranged = [
        "data.max_frames=25",
        "data.tokens_per_batch=192",
        "data.min_megapixels=0.004",
        "data.max_megapixels=0.025",
    ]
    laddered = load_train_config(tiny_overrides(simple_shards, tmp_path, 1, *ranged))
    assert data_layout(laddered)["aspect_buckets"] == ["96x96x3@7"]
    off = load_train_config(tiny_overrides(simple_shards, tmp_path, 1, *ranged, "data.bucket_tolerance=0"))
    assert "aspect_buckets" not in data_layout(off)
