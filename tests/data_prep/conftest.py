"""Fixtures for data_prep tests: model files in the official layouts, small generated corpora."""

from __future__ import annotations

import pytest
import torch

from data_prep.synthetic.corpus import generate_corpus


@pytest.fixture(scope="session")
def syncnet_file(tmp_path_factory):
    """A randomly initialised SyncNet saved like the official ``syncnet_v2.model`` (a state dict)."""
    from data_prep.models.syncnet import SyncNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def hyperiqa_file(tmp_path_factory):
    """A randomly initialised HyperIQA saved like the official ``koniq_pretrained.pkl``."""
    from data_prep.models.hyperiqa import KONIQ_ARGS, HyperNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "koniq_pretrained.pkl"
    torch.save(HyperNet(*KONIQ_ARGS).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """Four 5.2 s synthetic talking heads at 25 and 30 fps, 192 px."""
    out = tmp_path_factory.mktemp("corpus")
    generate_corpus(out, 4, seed=3, fps_choices=(25.0, 30.0), duration_s=5.2, width=192, height=192)
    return out


def prep_overrides(input_dir, output_dir, *extra: str) -> list[str]:
    """Overrides for a fast run without SyncNet/HyperIQA: tiny audio encoder, small faces allowed."""
    return [
        f"input_dir={input_dir}",
        f"output_dir={output_dir}",
        "audio=tiny",
        "probe.min_bitrate_kbps=0",
        "faces.min_face_px=48",
        "sync.enabled=false",
        "quality.enabled=false",
        "execution.videos_per_unit=2",
        *extra,
    ]
