"""Shared fixtures: tiny configs, generated shards, the real-data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"

# Keep CPU tests reproducible and light on a 2-core machine.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``../shared/data/real``; tests using it skip when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real talking-head recordings not present at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def local_slurm():
    """A single-node SLURM on this machine (``launch.local_slurm``) for the session; clients need ``.env``.

    Skips, with the reason, where the machine cannot run one (not root, slurm-wlm/munge missing) or the
    daemons do not come up (the skip message carries their logs); once it is up, tests fail normally.
    With ``TALKDIT_REQUIRE_SLURM=1`` (set by ``.ci/run``) a missing cluster fails instead of skipping.
    """
    from launch.local_slurm import LocalSlurmUnavailable, start_local_slurm
    from launch.local_slurm_cluster import LocalSlurmStartError

    try:
        cluster = start_local_slurm()
    except (LocalSlurmUnavailable, LocalSlurmStartError) as err:
        reason = f"no local SLURM: {err}"
        # CI installs slurm-wlm and munge: there a cluster that does not come up is a failure, not a skip.
        if os.environ.get("TALKDIT_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield cluster
    finally:
        cluster.stop()


# --- short training runs of the tiny smoke model, shared by the training, export and dub tests ---------------


@pytest.fixture(scope="session")
def simple_shards(tmp_path_factory):
    """Four generated 64x64 clips in two shards (``tests/train/shards.py``)."""
    from tests.train.shards import write_simple_shards

    out = tmp_path_factory.mktemp("shards")
    write_simple_shards(out, num_clips=4, per_shard=2)
    return f"{out}/*.tar"


@pytest.fixture(scope="session")
def stage1(simple_shards, tmp_path_factory):
    """A 3-step stage-1 run and its export: ``(result, export_dir, files)``."""
    from tests.train.conftest import tiny_overrides
    from trainer.export import export_checkpoint
    from trainer.train import run

    root = tmp_path_factory.mktemp("stage1")
    result = run(tiny_overrides(simple_shards, root / "run", 3))
    export = export_checkpoint(result.last_checkpoint, root / "export")
    return result, root / "export", export


@pytest.fixture(scope="session")
def stage2(simple_shards, stage1, tmp_path_factory):
    """A 3-step stage-2 run (LoRA rank 4, alpha 8) from stage 1: ``(result, export_dir, files, overrides)``."""
    from tests.train.conftest import tiny_overrides
    from trainer.export import export_checkpoint
    from trainer.train import run

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


@pytest.fixture(scope="session")
def smoke_base(stage2, tmp_path_factory):
    """The smoke runs' (random, tiny) base model written as a diffusers folder, as a user's base folder would be."""
    from trainer.config.compose import load_train_config, to_container
    from trainer.model.backbone import load_transformer
    from trainer.model.base_folder import write_base_folder

    cfg = load_train_config(stage2[3])
    folder = tmp_path_factory.mktemp("base") / "base_model"
    folder.mkdir()
    write_base_folder(folder, load_transformer(cfg.model.transformer).state_dict(), to_container(cfg.model), "smoke")
    return folder


@pytest.fixture
def other_dit_base(smoke_base, tmp_path):
    """A base folder like :func:`smoke_base` whose DiT has 3 blocks, not 2: the smoke runs' weights do not fit it."""
    other = tmp_path / "other_base"
    other.mkdir()
    for part in ("vae", "text_encoder", "tokenizer", "scheduler"):
        (other / part).symlink_to(smoke_base / part)
    (other / "transformer").mkdir()
    config = json.loads((smoke_base / "transformer" / "config.json").read_text()) | {"num_layers": 3}
    (other / "transformer" / "config.json").write_text(json.dumps(config))
    return other
