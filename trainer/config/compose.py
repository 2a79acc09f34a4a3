"""Composing ``conf/`` with Hydra into validated dataclass configs, and saving what a run used.

Entry points compose with Hydra's compose API instead of ``@hydra.main`` so that nothing (not even an
empty output folder) is written before the config has been validated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize, initialize_config_dir
from hydra.core.config_store import ConfigLoadError, ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from trainer.atomic import atomic_write_text
from trainer.config.errors import ConfigError
from trainer.config.keys import check_overrides
from trainer.config.schema import TrainConfig
from trainer.config.validate import validate_train_config


def _conf_dir() -> Path:
    """The folder of the ``conf`` package: the checkout's ``conf/``, or the copy an installed talkdit ships."""
    root = resources.files("conf")
    if not isinstance(root, Path):  # a zipped install: Hydra reads config folders from the file system only
        raise RuntimeError(f"talkdit's configs must be installed as files, found {root!r}")
    return root


CONF_DIR = _conf_dir()

_registered = False
# How errors name a primary config.
_CONFIG_NAMES = {"train": "training", "data_prep": "data preparation"}
# Keys that configs saved by older talkdit versions (a checkpoint's) still hold: ``section.old -> new leaf``
# under the same section, or ``None`` for a key that was dropped (``parallel.name`` repeated ``parallel.mode``).
_RENAMED_KEYS: dict[str, str | None] = {"strategy.strategy": "kind", "parallel.name": None}


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


def schema_for(config_name: str) -> type:
    """The dataclass a primary config is typed by.

    ``conf/<config_name>.yaml`` names its schema first in its defaults list (``train_schema``); a config
    without a YAML file is a schema stored under ``config_name`` itself (:func:`register_schema`).

    Raises:
        ConfigError: No schema is registered under that name.
    """
    register_schemas()
    name = config_name
    path = CONF_DIR / f"{config_name}.yaml"
    if path.is_file():
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", [])
        name = next((d for d in defaults if isinstance(d, str) and d != "_self_"), config_name)
    try:
        node = ConfigStore.instance().load(f"{name}.yaml").node
    except ConfigLoadError as err:
        raise ConfigError("<config>", config_name, f"no schema registered as {name!r}") from err
    return OmegaConf.get_type(node)


def config_groups(config_name: str) -> dict[str, list[str]]:
    """Config groups of ``conf/<config_name>.yaml``'s defaults list and the options of each.

    Returns:
        ``group -> sorted option names`` (``conf/<group>/*.yaml``); empty for configs without a YAML file.
    """
    path = CONF_DIR / f"{config_name}.yaml"
    if not path.is_file():
        return {}
    groups = {}
    for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
        if isinstance(entry, dict):
            for group in entry:
                name = str(group).removeprefix("override ").lstrip("/")
                groups[name] = sorted(p.stem for p in (CONF_DIR / name).glob("*.yaml"))
    return groups


def compose_config(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` (or a schema stored under that name) with command-line overrides.

    Every override's key is checked against the schema first, in all its forms (``key=``, ``+key=``,
    ``++key=``): Hydra would otherwise add an unknown ``+key`` and the run would silently ignore it.

    Args:
        config_name: Primary config without ``.yaml``, e.g. ``train``.
        overrides: Hydra overrides such as ``experiment=demo`` or ``data.batch_size=2``.

    Returns:
        The composed config (struct mode: unknown keys are errors).

    Raises:
        ConfigError: An override names an unknown key or group option, or a value has the wrong type.
    """
    return compose_with_choices(config_name, overrides)[0]


def compose_with_choices(config_name: str, overrides: list[str] | None = None) -> tuple[DictConfig, dict[str, str]]:
    """:func:`compose_config`, plus the option each config group ended up with (``{"model": "tiny", ...}``)."""
    register_schemas()
    overrides = check_overrides(
        schema_for(config_name),
        list(overrides or []),
        config_groups(config_name),
        f"the {_CONFIG_NAMES.get(config_name, config_name)} config",
    )
    # A config without a YAML file is a bare schema with no groups: composed without conf/ on the search path,
    # so that a key of it named like a conf/ group (eval.dub's `audio=`) stays a key instead of a group choice.
    context = (
        initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3")
        if (CONF_DIR / f"{config_name}.yaml").is_file()
        else initialize(config_path=None, version_base="1.3")
    )
    try:
        with context:
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        key, override = _offending_override(err, overrides)
        raise ConfigError(key, override, _first_line(err)) from err
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not str(k).startswith("hydra/")}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def load_config(config_name: str, overrides: list[str] | None = None) -> Any:
    """Compose a config and turn it into its dataclass objects (no cross-field rules checked).

    Args:
        config_name: As for :func:`compose_config`.
        overrides: As for :func:`compose_config`.

    Returns:
        An instance of the config's schema.

    Raises:
        ConfigError: On an unknown key, a wrong type or a required value left unset.
    """
    cfg = compose_config(config_name, overrides)
    try:
        return OmegaConf.to_object(cfg)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or "<config>"
        raise ConfigError(str(key), "???", "is required and has no value; set it on the command line") from err
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "<config>"
        raise ConfigError(str(key), None, _first_line(err)) from err


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
    obj = load_config("train", overrides)
    assert isinstance(obj, TrainConfig)
    obj = _plain_callbacks(obj)
    validate_train_config(obj)
    return obj


def _plain_callbacks(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its callback specs as plain containers (an interpolated ``${validation}`` resolved to a dict).

    A config saved with its interpolations resolved then loads back equal to the one it was saved from.
    """
    plain = {name: None if spec is None else to_container(spec) for name, spec in cfg.callbacks.items()}
    return dataclasses.replace(cfg, callbacks=plain)


def config_from_container(data: dict, source: str = "<config>") -> TrainConfig:
    """The :class:`TrainConfig` of a resolved config stored as a plain dict (a checkpoint's, a run's).

    Args:
        data: ``to_container`` output.
        source: Where it came from, for error messages.

    Raises:
        ConfigError: The stored config no longer fits the schema or its rules (names the key).
    """
    data = _upgrade_saved_config(data)
    try:
        obj = _plain_callbacks(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), data)))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or source
        raise ConfigError(str(key), None, f"{source}: {_first_line(err)}") from err
    validate_train_config(obj)
    return obj


def _upgrade_saved_config(data: dict) -> dict:
    """A copy of a saved training config with the keys of :data:`_RENAMED_KEYS` renamed or dropped."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for old, new in _RENAMED_KEYS.items():
        section, _, leaf = old.partition(".")
        node = data.get(section)
        if isinstance(node, dict) and leaf in node:
            value = node.pop(leaf)
            if new is not None:
                node.setdefault(new, value)
    return data


def to_container(cfg: Any) -> dict:
    """Plain ``dict`` of a dataclass or OmegaConf config, all interpolations resolved."""
    if isinstance(cfg, dict):
        node = OmegaConf.create(cfg)
    else:
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
