"""The checks every config rule is written with: each raises :class:`ConfigError` naming the key and the rule."""

from __future__ import annotations

from pathlib import Path

from trainer.config.errors import ConfigError
from trainer.config.schema import COMPONENT_SOURCES


def require(cond: bool, key: str, value: object, rule: str) -> None:
    """Raise :class:`ConfigError` for ``key`` unless ``cond``."""
    if not cond:
        raise ConfigError(key, value, rule)


def probability(key: str, value: float) -> None:
    """``value`` is a probability."""
    require(0.0 <= value <= 1.0, key, value, "must be a probability in [0, 1]")


def positive(key: str, value: float) -> None:
    """``value`` is > 0."""
    require(value > 0, key, value, "must be > 0")


def component_source(prefix: str, source: str, path: str | None) -> None:
    """A model component's ``source`` is known and, unless random, its ``path`` exists."""
    require(source in COMPONENT_SOURCES, f"{prefix}.source", source, f"must be one of {COMPONENT_SOURCES}")
    if source == "random":
        return
    require(
        bool(path),
        f"{prefix}.path",
        path,
        f"is required when {prefix}.source={source} (a diffusers folder or LTX single-file checkpoint "
        "of Lightricks/LTX-Video-0.9.7-dev)",
    )
    require(Path(path).exists(), f"{prefix}.path", path, "does not exist")
