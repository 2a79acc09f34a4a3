"""Composing ``conf/`` with Hydra into validated dataclass configs, and saving what a run used.

Entry points compose with Hydra's compose API instead of ``@hydra.main`` so that nothing (not even an
empty output folder) is written before the config has been validated.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from trainer.atomic import atomic_write_text
from trainer.config.errors import ConfigError
from trainer.config.schema import TrainConfig
from trainer.config.validate import validate_train_config

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

_registered = False


def register_schemas() -> None:
    """Register the training schema that ``conf/train.yaml``'s defaults list names (idempotent)."""
    global _registered
    if _registered:
        return
    register_schema("train_schema", TrainConfig)
    _registered = True


def register_schema(name: str, node: type) -> None:
    """Register a dataclass schema under ``name`` for a primary config's defaults list."""
    ConfigStore.instance().store(name=name, node=node)


def compose_config(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides.

    Args:
        config_name: Primary config file without ``.yaml``, e.g. ``train``.
        overrides: Hydra overrides such as ``experiment=demo`` or ``data.batch_size=2``.

    Returns:
        The composed config (struct mode: unknown keys are errors).

    Raises:
        ConfigError: An override names an unknown key or group option, or a value has the wrong type.
    """
    register_schemas()
    overrides = list(overrides or [])
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        key, override = _offending_override(err, overrides)
        raise ConfigError(key, override, _first_line(err)) from err
    return cfg


def _first_line(err: Exception) -> str:
    msg = str(err).strip()
    cause = err.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip() not in msg:
        msg = f"{msg} ({str(cause).strip().splitlines()[0]})"
    return " ".join(msg.split())


def _offending_override(err: Exception, overrides: list[str]) -> tuple[str, str | list[str]]:
    text = f"{err} {err.__cause__ or ''}"
    for ov in overrides:
        key = ov.lstrip("+~").split("=", 1)[0]
        if key and key in text:
            return key, ov
    return "<overrides>", overrides


def load_train_config(overrides: list[str] | None = None) -> TrainConfig:
    """Compose, type-check and validate ``conf/train.yaml``.

    Args:
        overrides: Hydra overrides, e.g. ``["experiment=demo", "loop.max_steps=5"]``.

    Returns:
        The config as :class:`TrainConfig` dataclass objects.

    Raises:
        ConfigError: On an unknown key, a wrong type, a missing required value or a broken rule.
    """
    cfg = compose_config("train", overrides)
    try:
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or "<config>"
        raise ConfigError(str(key), "???", "is required and has no value; set it on the command line") from err
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "<config>"
        raise ConfigError(str(key), None, _first_line(err)) from err
    assert isinstance(obj, TrainConfig)
    validate_train_config(obj)
    return obj


def config_from_container(data: dict, source: str = "<config>") -> TrainConfig:
    """The :class:`TrainConfig` of a resolved config stored as a plain dict (a checkpoint's, a run's).

    Args:
        data: ``to_container`` output.
        source: Where it came from, for error messages.

    Raises:
        ConfigError: The stored config no longer fits the schema or its rules (names the key).
    """
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), data))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or source
        raise ConfigError(str(key), None, f"{source}: {_first_line(err)}") from err
    validate_train_config(obj)
    return obj


def to_container(cfg: Any) -> dict:
    """Plain ``dict`` of a dataclass or OmegaConf config, all interpolations resolved."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return OmegaConf.to_container(node, resolve=True)


def config_fingerprint(cfg: Any, keys: tuple[str, ...] | None = None) -> str:
    """Stable short hash of a config (or of a subset of its top-level keys).

    Args:
        cfg: Dataclass or OmegaConf config.
        keys: Top-level keys to include; all when ``None``.

    Returns:
        16 hex characters of the SHA-256 of the canonical JSON.
    """
    data = to_container(cfg)
    if keys is not None:
        data = {k: data[k] for k in keys}
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_resolved_config(cfg: Any, path: Path) -> None:
    """Save the fully resolved config as YAML (atomically)."""
    atomic_write_text(Path(path), OmegaConf.to_yaml(OmegaConf.create(to_container(cfg))))
