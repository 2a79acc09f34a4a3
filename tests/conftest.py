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
