"""The training stream: sharding across ranks and workers, equal-token batches, fps into RoPE, resume, bad data."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.train.conftest import tiny_overrides
from tests.train.shards import write_simple_shards
from trainer.config.compose import load_train_config
from trainer.data.buckets import Bucket, Compression
from trainer.data.datamodule import expand_shards, feature_spec, stream_settings
from trainer.data.stream import TalkingHeadStream, shard_share
from trainer.lightning_module import TalkingHeadModule


def config(shards, tmp_path, *extra):
    return load_train_config(tiny_overrides(shards, tmp_path / "run", 1, *extra))


def make_stream(cfg, rank=0, world=1, start=None):
    settings = stream_settings(
        cfg.data, feature_spec(cfg), cfg.objective.num_reference_frames, Compression.of(cfg.model.vae)
    )
    return TalkingHeadStream(expand_shards(cfg.data.shards), settings, rank, world, start)


def loader(stream, workers):
    return iter(DataLoader(stream, batch_size=None, num_workers=workers))


@pytest.fixture(scope="module")
def eight_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("eight")
    write_simple_shards(out, num_clips=16, per_shard=2)
    return f"{out}/*.tar"


def test_shard_share_is_a_partition_every_epoch():
    for epoch in range(3):
        shares = [shard_share(10, epoch, 5, r, 4) for r in range(4)]
        flat = sorted(i for s in shares for i in s)
        assert flat == list(range(10))
    assert shard_share(10, 0, 5, 0, 4) != shard_share(10, 1, 5, 0, 4)  # reshuffled per epoch


@pytest.mark.slow
def test_two_ranks_two_workers_read_every_sample_once_per_epoch(eight_shards, tmp_path):
    # 16 clips in 8 shards, 2 ranks x 2 workers: each reader owns 2 shards = 4 clips = 2 batches per epoch.
    cfg = config(eight_shards, tmp_path, "data.shuffle_buffer=1")
    keys = []
    for rank in range(2):
        it = loader(make_stream(cfg, rank, 2), workers=2)
        for _ in range(4):
            keys += next(it)["keys"]
    assert len(keys) == 16 and len(set(keys)) == 16


@pytest.mark.slow
def test_every_batch_has_the_token_budget_and_buckets_vary(tmp_path):
    shards = tmp_path / "multi"
    write_simple_shards(shards, num_clips=12, per_shard=3, size=128, frames=25, widths=[128, 192, 96])
    # 0.004-0.025 MP, 192 tokens per batch: several buckets (e.g. 64x64 x 4 latent frames x 12 clips).
    cfg = config(
        f"{shards}/*.tar",
        tmp_path,
        "data.max_frames=25",
        "data.tokens_per_batch=192",
        "data.min_megapixels=0.004",
        "data.max_megapixels=0.025",
        "data.shuffle_buffer=4",
    )
    seen_buckets = set()
    it = iter(make_stream(cfg))
    for _ in range(12):
        batch = next(it)
        b, f, h, w, _ = batch["frames"].shape
        tokens = b * ((f - 1) // 8 + 1) * (h // 32) * (w // 32)
        # The exact grid, or an aspect ladder's bucket within data.bucket_tolerance (0.05) of the budget.
        assert 0.95 * 192 <= tokens <= 192
        assert h % 32 == 0 and w % 32 == 0 and f == batch["num_frames"]
        seen_buckets.add((h, w))
    assert len(seen_buckets) >= 2


@pytest.mark.slow
def test_each_samples_fps_reaches_the_rope_coordinates(tmp_path):
    shards = tmp_path / "fps"
    write_simple_shards(shards, num_clips=2, per_shard=2, fps=[25.0, 30.0])
    cfg = config(f"{shards}/*.tar", tmp_path, "stage.p_id=0.0")
    batch = next(iter(make_stream(cfg)))
    module = TalkingHeadModule(cfg)
    inputs = module.prepare_step(batch, torch.Generator().manual_seed(0))
    per_frame = 2 * 2  # tokens per latent frame at 64x64
    for i, fps in enumerate(batch["fps"].tolist()):
        # Latent frame 1 starts at video frame 1: its temporal coordinate is 1 / fps seconds.
        assert inputs.coords[i, 0, per_frame].item() == pytest.approx(1.0 / fps)
    assert sorted(batch["fps"].tolist()) == [25.0, 30.0]


@pytest.mark.slow
def test_resume_continues_the_exact_batch_sequence(eight_shards, tmp_path):
    cfg = config(eight_shards, tmp_path, "data.shuffle_buffer=3", "data.tokens_per_batch=12")
    it = loader(make_stream(cfg), workers=2)
    full = [next(it) for _ in range(14)]  # crosses an epoch boundary (16 clips, batch 1)
    consumed = full[:6]
    position = {}
    for b in consumed:
        position[b["stream_worker"]] = b["stream_group"]
    it2 = loader(make_stream(cfg, start=position), workers=2)
    resumed = [next(it2) for _ in range(8)]
    assert [b["keys"] for b in resumed] == [b["keys"] for b in full[6:]]
    assert all(torch.equal(a["frames"], b["frames"]) for a, b in zip(resumed, full[6:]))


@pytest.mark.slow
def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    from data_prep.media import encode_npy
    from data_prep.samples import encode_sample
    from data_prep.shard_writer import ShardWriter
    from tests.train.shards import TINY_WHISPER, simple_clip
    from trainer.model.whisper_features import WhisperFeatureExtractor

    ex = WhisperFeatureExtractor(TINY_WHISPER)
    samples = [encode_sample(simple_clip(s, 17, 64, 25.0, 2, ex)) for s in range(4)]
    samples[1]["whisper.npy"] = encode_npy(np.zeros((3, 5, 32), np.float16))  # wrong length
    samples[2]["video.mp4"] = b"not a video"
    with ShardWriter(tmp_path / "bad", samples_per_shard=4) as w:
        for s in samples:
            w.write(s)
    cfg = config(f"{tmp_path}/bad/*.tar", tmp_path, "data.tokens_per_batch=12", "data.shuffle_buffer=1")
    it = iter(make_stream(cfg))
    batches = [next(it) for _ in range(4)]
    assert {k for b in batches for k in b["keys"]} == {samples[0]["__key__"], samples[3]["__key__"]}
    last = batches[-1]
    assert last["stream_skipped"] >= 2 and "whisper.npy" in last["stream_first_skipped"]


def test_bucket_arithmetic():
    b = Bucket(512, 768, 16, 4, Compression(32, 8))
    assert b.video_frames == 121 and b.tokens == 24576 and b.name == "512x768x16@4"
