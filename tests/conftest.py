"""Shared fixtures: tiny configs, generated shards, the real-data folder."""

from __future__ import annotations

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
    from launch.local_slurm import LocalSlurmStartError, LocalSlurmUnavailable, start_local_slurm

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
