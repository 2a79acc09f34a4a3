"""Helpers of the training tests (the shared shards and stage-1/stage-2 runs are in ``tests/conftest.py``)."""

from __future__ import annotations

from trainer.data.buckets import Compression
from trainer.data.datamodule import expand_shards, stream_settings
from trainer.data.stream import TalkingHeadStream


def tiny_overrides(shards_glob: str, run_dir, steps: int = 3, *extra: str) -> list[str]:
    return [
        "experiment=smoke",
        f"data.shards={shards_glob}",
        # 64x64 clips of 17 frames: 3 latent frames of 2x2 tokens, two clips per batch.
        "data.max_frames=17",
        "data.tokens_per_batch=24",
        "data.min_megapixels=0.004096",
        "data.max_megapixels=0.004096",
        "data.num_workers=0",
        f"loop.max_steps={steps}",
        "loop.checkpoint_every_n_steps=2",
        "loop.log_every_n_steps=1",
        "loop.progress_bar=false",
        f"run_dir={run_dir}",
        *extra,
    ]


def stream_batches(cfg, count: int, start_groups=None, rank: int = 0, world: int = 1) -> list[dict]:
    """The first ``count`` batches the training stream of ``cfg`` yields (in this process)."""
    from trainer.data.datamodule import feature_spec

    settings = stream_settings(
        cfg.data, feature_spec(cfg), cfg.objective.num_reference_frames, Compression.of(cfg.model.vae)
    )
    stream = TalkingHeadStream(expand_shards(cfg.data.shards), settings, rank, world, start_groups)
    it = iter(stream)
    return [next(it) for _ in range(count)]
