"""The YAML files under conf/ say each thing once: only what differs from the schema, groups chosen by override.

A leaf that repeats the dataclass default (or, in an experiment, what the experiment's group choices give
anyway) is a second copy that silently stops meaning anything once the default changes; an experiment that
sets a group's keys instead of choosing the group's option (``logger: {name: wandb}`` instead of
``override /logger: wandb``) cannot be overridden from the command line.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml
from omegaconf import MISSING, OmegaConf

from trainer.config.compose import CONF_DIR, compose_config, compose_with_choices, config_groups, schema_for
from trainer.config.keys import leaf_values

PRIMARY = ("train", "data_prep", "launch")


def _register(config_name: str) -> None:
    if config_name == "data_prep":
        from data_prep.config import register

        register()
    elif config_name == "launch":
        from launch.slurm import _register

        _register()


def _defaults(schema: type) -> dict:
    """The schema's defaults as a plain dict; a nested dataclass left MISSING holds its own defaults."""
    hints = typing.get_type_hints(schema)
    out = {}
    for f in dataclasses.fields(schema):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out[f.name] = _defaults(tp)
        elif f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = MISSING
    return out


def _body(path: Path) -> tuple[dict, list, bool]:
    """A config file's keys (defaults list removed), its defaults list, and whether it is ``@package _global_``."""
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    return {k: v for k, v in data.items() if k != "defaults"}, data.get("defaults", []), "@package _global_" in text


def _leaves(node: dict, prefix: str = "") -> dict:
    """``dotted key -> value`` of the leaves (lists and scalars; empty dicts count as leaves)."""
    return {k: v for k, v in leaf_values(node, prefix).items() if not isinstance(v, dict) or not v}


def _files() -> list[tuple[str, str | None, Path]]:
    """``(primary config, group or None, file)`` for every primary config and every option of its groups."""
    out = []
    for name in PRIMARY:
        out.append((name, None, CONF_DIR / f"{name}.yaml"))
        for group, options in config_groups(name).items():
            out.extend((name, group, CONF_DIR / group / f"{option}.yaml") for option in options)
    return out


def _group_overrides(defaults: list) -> list[str]:
    """An experiment's ``override /group: option`` entries as command-line overrides."""
    out = []
    for entry in defaults:
        if isinstance(entry, dict):
            for key, value in entry.items():
                out.append(f"{str(key).removeprefix('override ').lstrip('/')}={value}")
    return out


@pytest.mark.parametrize(
    ("config_name", "group", "path"),
    _files(),
    ids=lambda x: str(x.relative_to(CONF_DIR)) if isinstance(x, Path) else None,
)
def test_no_yaml_leaf_repeats_what_the_config_holds_anyway(config_name, group, path):
    _register(config_name)
    body, defaults, is_global = _body(path)
    package = "" if group is None or is_global else f"{group}."
    if group == "experiment":
        # What the experiment's group choices give without its own keys.
        baseline = OmegaConf.to_container(compose_config(config_name, _group_overrides(defaults)), resolve=False)
        what = "what its group choices give"
    else:
        baseline, what = _defaults(schema_for(config_name)), "the schema default"
    flat = leaf_values(baseline)
    repeated = {key: value for key, value in _leaves(body, package).items() if key in flat and flat[key] == value}
    assert not repeated, f"{path.relative_to(CONF_DIR)} repeats {what}: {repeated}"


@pytest.mark.parametrize("path", sorted((CONF_DIR / "experiment").glob("*.yaml")), ids=lambda p: p.stem)
def test_experiments_choose_group_options_by_override(path):
    body, _, _ = _body(path)
    for group in config_groups("train"):
        assert "name" not in (body.get(group) or {}), (
            f"{path.name} sets {group}.name; choose the option with `- override /{group}: <option>` instead"
        )


def test_a_command_line_group_choice_beats_the_experiments():
    cfg, choices = compose_with_choices("train", ["experiment=edityourself_stage1", "logger=csv"])
    assert choices["logger"] == "csv" and cfg.logger.name == "csv"
    cfg, choices = compose_with_choices("train", ["experiment=edityourself_stage1"])
    assert choices["logger"] == "wandb" and cfg.logger.name == "wandb"
