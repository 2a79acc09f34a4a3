"""Fixtures for training tests: simple shards and short stage-1/stage-2 runs shared by the session."""

from __future__ import annotations

import pytest

from tests.train.shards import write_simple_shards
from trainer.data.datamodule import expand_shards, stream_settings
from trainer.data.stream import TalkingHeadStream
from trainer.export import export_checkpoint
from trainer.train import run


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


@pytest.fixture(scope="session")
def simple_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_simple_shards(out, num_clips=4, per_shard=2)
    return f"{out}/*.tar"


@pytest.fixture(scope="session")
def stage1(simple_shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("stage1")
    result = run(tiny_overrides(simple_shards, root / "run", 3))
    export = export_checkpoint(result.last_checkpoint, root / "export")
    return result, root / "export", export


@pytest.fixture(scope="session")
def stage2(simple_shards, stage1, tmp_path_factory):
    root = tmp_path_factory.mktemp("stage2")
    _, stage1_export, _ = stage1
    overrides = tiny_overrides(
        simple_shards,
        root / "run",
        3,
        "stage=stage2_lora",
        f"stage.adapter_init={stage1_export}",
        "stage.lora.rank=4",
        "stage.lora.alpha=8",
    )
    result = run(overrides)
    export = export_checkpoint(result.last_checkpoint, root / "export")
    return result, root / "export", export, overrides


def stream_batches(cfg, count: int, start_groups=None, rank: int = 0, world: int = 1) -> list[dict]:
    """The first ``count`` batches the training stream of ``cfg`` yields (in this process)."""
    from trainer.runner import feature_spec

    settings = stream_settings(cfg.data, feature_spec(cfg), cfg.objective.num_reference_frames)
    stream = TalkingHeadStream(expand_shards(cfg.data.shards), settings, rank, world, start_groups)
    it = iter(stream)
    return [next(it) for _ in range(count)]
