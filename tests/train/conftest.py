"""Fixtures for training tests: simple shards and short stage-1/stage-2 runs shared by the session."""

from __future__ import annotations

import pytest

from tests.train.shards import write_simple_shards
from trainer.export import export_checkpoint
from trainer.train import run


def tiny_overrides(shards_glob: str, run_dir, steps: int = 3, *extra: str) -> list[str]:
    return [
        "experiment=demo",
        f"data.shards={shards_glob}",
        "data.num_frames=17",
        "data.height=64",
        "data.width=64",
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
