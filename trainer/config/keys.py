"""The keys a config schema defines, and the check that refuses an override naming any other key.

Hydra accepts ``+key=value`` and ``++key=value`` for keys a config does not have, and for some structured
configs the added key then vanishes without a word (a misspelt ``+optim.lr_adm`` trained with the default
learning rate). Every entry point therefore checks each override's key against the schema before Hydra
sees it, in all three forms, and names the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import MISSING

from trainer.config.errors import ConfigError
from trainer.config.field_docs import class_summary, field_docs


@dataclass(frozen=True)
class KeyInfo:
    """One key of a schema.

    Attributes:
        key: Dotted path, e.g. ``optim.lr_adam``.
        type_name: The annotation as written in the schema, e.g. ``str | None``.
        doc: One-line documentation ("" when the schema has none).
        is_group: The key holds a nested dataclass (a section of keys).
        free_form: A ``dict`` or ``Any`` value: any sub-key is accepted.
    """

    key: str
    type_name: str
    doc: str
    is_group: bool = False
    free_form: bool = False


def _unwrap_optional(tp: Any) -> Any:
    """``X | None`` → ``X`` (other unions unchanged)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _type_name(field: dataclasses.Field, resolved: Any) -> str:
    if isinstance(field.type, str):
        return field.type
    return getattr(resolved, "__name__", None) or str(resolved).replace("typing.", "")


@cache
def schema_keys(schema: type) -> tuple[KeyInfo, ...]:
    """Every key of a dataclass schema, sections before their keys, in declaration order.

    Args:
        schema: The root dataclass, e.g. :class:`trainer.config.schema.TrainConfig`.

    Returns:
        One :class:`KeyInfo` per key, nested dataclasses flattened to dotted paths.
    """
    out: list[KeyInfo] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            tp = _unwrap_optional(hints.get(f.name, Any))
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(tp):
                out.append(KeyInfo(key, _type_name(f, tp), docs.get(f.name) or class_summary(tp), is_group=True))
                walk(tp, key + ".")
                continue
            free = tp is Any or typing.get_origin(tp) is dict or tp is dict
            out.append(KeyInfo(key, _type_name(f, tp), docs.get(f.name, ""), free_form=free))

    walk(schema, "")
    return tuple(out)


def _free_form_parent(schema: type, key: str) -> KeyInfo | None:
    """The dict-typed (or list) key that ``key`` lies inside, if any."""
    by_key = {k.key: k for k in schema_keys(schema)}
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        parent = by_key.get(".".join(parts[:i]))
        if parent is not None:
            # A list item (``modes.0``) or anything under a dict-typed key is the value's business.
            listed = parts[i].isdigit() and parent.type_name.startswith(("list", "List"))
            return parent if parent.free_form or listed else None
    return None


def _known(schema: type, key: str) -> bool:
    """Whether ``key`` (dotted) names a key of the schema, or lies inside a free-form (dict) key."""
    return any(k.key == key for k in schema_keys(schema)) or _free_form_parent(schema, key) is not None


def closest_key(schema: type, key: str) -> str | None:
    """The valid key most like ``key`` (a misspelling's likely intent), or ``None``.

    Under a section that exists (``optim.lr_adm``) only that section's keys are candidates; otherwise all
    keys are.
    """
    keys = [k.key for k in schema_keys(schema)]
    parent, _, leaf = key.rpartition(".")
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    if parent and parent in keys:
        found = difflib.get_close_matches(leaf, [k.rpartition(".")[2] for k in siblings], n=1, cutoff=0.6)
        return f"{parent}.{found[0]}" if found else None
    found = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if found:
        return found[0]
    # A section misspelt (``optm.lr_adam``): the same leaf under another section.
    same_leaf = [k for k in keys if k.rpartition(".")[2] == leaf and k.count(".") == key.count(".")]
    return same_leaf[0] if len(same_leaf) == 1 else None


def unknown_key_error(schema: type, key: str, value: object, what: str) -> ConfigError:
    """The error for an override naming a key the schema does not have."""
    hint = closest_key(schema, key)
    if hint is not None:
        return ConfigError(key, value, f"is not a key of {what}; the closest valid key is '{hint}'")
    keys = [k.key for k in schema_keys(schema)]
    parent = key.rpartition(".")[0]
    if parent in keys:
        listed, where = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent], f" under {parent}"
    else:
        listed, where = [k for k in keys if "." not in k], ""
    return ConfigError(key, value, f"is not a key of {what}; valid keys{where}: " + ", ".join(listed))


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parse of command-line overrides.

    Raises:
        ConfigError: An override is not valid override syntax (names it and how to quote).
    """
    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except HydraException as err:
            reason = " ".join(str(err).split()).split(" See https://hydra.cc")[0]
            if "=" not in text:
                rule = "expected key=value (options are --help and --cfg job)"
            else:
                rule = f"cannot be parsed ({reason}); quote values with special characters: 'key=\"...\"'"
            raise ConfigError(text.split("=", 1)[0], text, rule) from err
    return parsed


def check_overrides(schema: type, overrides: list[str], groups: dict[str, list[str]], what: str) -> list[str]:
    """Refuse overrides that name a key or a group option the config does not have.

    ``key=value``, ``+key=value``, ``++key=value`` and ``~key`` are all checked against the schema; a
    group override (``model=tiny``) must name an option of the group.

    Args:
        schema: The root dataclass the config is typed by.
        overrides: Command-line overrides as typed.
        groups: Config group → its options (``conf/<group>/*.yaml`` stems).
        what: How messages name the config, e.g. ``"the training config"``.

    Returns:
        The overrides for Hydra: a schema key is always present in the composed config, so its ``+``/``++``
        forms become a plain assignment, and a new key inside a dict-typed key (``model.vae.arch.x=1``)
        becomes ``++`` (add or replace); everything else is passed as typed.

    Raises:
        ConfigError: Naming the key and the closest valid one (or the group's options).
    """
    out = []
    for text, ov in zip(overrides, parse_overrides(overrides), strict=True):
        key = ov.key_or_group
        if key in groups:
            value = ov.value() if not ov.is_delete() else None
            if isinstance(value, str) and value not in groups[key]:
                near = difflib.get_close_matches(value, groups[key], n=1, cutoff=0.5)
                options = ", ".join(groups[key])
                rule = f"config group '{key}' has no option '{value}'; options: {options}"
                raise ConfigError(key, value, rule + (f" (closest: '{near[0]}')" if near else ""))
            # Every group named here is in the defaults list already: '+group=x' means 'group=x'.
            out.append(text if ov.is_delete() else f"{key}={text.split('=', 1)[1]}")
            continue
        raw = text.split("=", 1)[1] if "=" in text else None
        if not _known(schema, key):
            raise unknown_key_error(schema, key, raw, what)
        if ov.is_delete() or raw is None:
            out.append(text)
        elif any(k.key == key for k in schema_keys(schema)):
            out.append(f"{key}={raw}")
        else:
            out.append(f"++{key}={raw}")
    return out


def leaf_values(node: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a plain container (``OmegaConf.to_container`` output) to ``dotted key -> value``."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out[f"{prefix}{k}"] = v
            if isinstance(v, dict):
                out.update(leaf_values(v, f"{prefix}{k}."))
        return out
    return {}


def is_missing(value: Any) -> bool:
    """Whether a container value is OmegaConf's mandatory-missing marker."""
    return value == MISSING
