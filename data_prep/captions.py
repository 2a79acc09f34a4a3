"""Captions of clips: a sidecar file beside the video, or a pluggable captioner (``features.captioner``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data_prep.config import DataPrepConfig
from trainer.config.errors import ConfigError


def sidecar_caption(path: Path, cfg: DataPrepConfig) -> str | None:
    """Caption from a sidecar file next to the video (``<stem><suffix>``), if any."""
    for suffix in cfg.features.caption_sidecar_suffixes:
        sidecar = path.with_name(path.stem + suffix)
        if sidecar.is_file():
            text = sidecar.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text
    return None


def load_captioner(spec: str | None) -> Callable[[np.ndarray, float, str], str] | None:
    """Import a captioner given as ``"package.module:function"``.

    Raises:
        ConfigError: The spec is malformed or does not name a callable.
    """
    if spec is None:
        return None
    module_name, sep, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr) if sep else None
    except (ImportError, AttributeError) as err:
        raise ConfigError("features.captioner", spec, f"cannot be imported: {err}") from err
    if not callable(fn):
        raise ConfigError("features.captioner", spec, "must name a callable as 'package.module:function'")
    return fn
