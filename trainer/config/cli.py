"""The command line every entry point shares: ``key=value`` overrides, ``--help``, ``--cfg job``, one-line errors.

An entry point describes itself once as a :class:`Command` and hands its work to :func:`run_command`:

- ``--help`` lists the config groups with their options (the current choice marked), the experiments,
  and every key with its type, its value under the given overrides and its one-line doc, all read from
  the schema and ``conf/`` (nothing to keep in sync by hand);
- ``--cfg job`` prints the resolved config the overrides give (Hydra's spelling), and runs nothing;
- any other argument is an override, checked against the schema (:mod:`trainer.config.keys`);
- a bad input raises one of the entry point's user errors and becomes one line on stderr and exit
  status 2, never a traceback.

Only Hydra, OmegaConf and the schemas are imported here, so ``--help`` and config errors answer in about a
second without loading torch.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from omegaconf import OmegaConf

from trainer.config.compose import CONF_DIR, compose_config, compose_with_choices, config_groups, schema_for
from trainer.config.errors import ConfigError
from trainer.config.field_docs import first_sentence
from trainer.config.keys import is_missing, leaf_values, schema_keys

HELP_FLAGS = ("-h", "--help")
CFG_FLAGS = ("--cfg", "-c")
# Errors that mean "the input is wrong", whatever the entry point: shown as one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, FileExistsError, NotADirectoryError)
_VALUE_WIDTH = 48


@dataclass(frozen=True)
class Command:
    """How an entry point presents itself on the command line.

    Attributes:
        module: The module run with ``python -m``, e.g. ``trainer.train``.
        config_name: Its primary config: ``conf/<config_name>.yaml`` or a schema registered under that name
            (:func:`trainer.config.compose.register_schema`).
        summary: What the command does, a short paragraph.
        synopsis: The argument part of the usage line.
        examples: Example command lines.
        notes: More text for ``--help`` after the keys (environment variables, forwarding rules).
        register: Registers the command's schema with Hydra's config store (called before composing).
        config_yaml: Renders ``--cfg job`` from the overrides when the command resolves its config in
            another way than composing ``config_name`` (``data_prep.report`` starts from a saved config).
        own_overrides: Picks the overrides ``config_name`` takes when the command forwards the others
            (``launch.slurm`` passes the job's keys on); ``--help`` shows the config under those.
    """

    module: str
    config_name: str
    summary: str
    synopsis: str = "[key=value ...]"
    examples: tuple[str, ...] = ()
    notes: str = ""
    register: Callable[[], None] | None = None
    config_yaml: Callable[[list[str]], str] | None = None
    own_overrides: Callable[[list[str]], list[str]] | None = None

    def compose(self, overrides: list[str]):
        """The composed config (``DictConfig``) for these overrides, keys checked."""
        if self.register is not None:
            self.register()
        return compose_config(self.config_name, overrides)


def split_flags(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """Separate ``--help`` / ``--cfg job`` from the overrides.

    Returns:
        ``("help" | "cfg" | None, overrides)``.

    Raises:
        ConfigError: An unknown ``-``option, or ``--cfg`` with another value than ``job``.
    """
    flag, rest = None, []
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in HELP_FLAGS:
            flag = flag or "help"
        elif arg in CFG_FLAGS or arg.startswith("--cfg="):
            value = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            i += 0 if "=" in arg else 1
            if value != "job":
                raise ConfigError("--cfg", value or None, "only '--cfg job' (print the resolved config) is supported")
            flag = flag or "cfg"
        elif arg.startswith("-") and "=" not in arg:
            raise ConfigError(arg, None, "unknown option; the options are --help and --cfg job, the rest is key=value")
        else:
            rest.append(arg)
        i += 1
    return flag, rest


def _fmt_value(value: Any) -> str:
    if is_missing(value):
        return "??? (required)"
    text = "null" if value is None else yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").strip()
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"


def option_doc(group: str, option: str) -> str:
    """One line from the comment block at the top of ``conf/<group>/<option>.yaml``."""
    lines = []
    for line in (CONF_DIR / group / f"{option}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text.startswith("@package"):
            lines.append(text)
    return first_sentence(" ".join(lines))


def _groups_section(config_name: str, choices: dict[str, Any]) -> list[str]:
    groups = config_groups(config_name)
    if not groups:
        return []
    out = ["Config groups (group=option; * marks the current choice):"]
    width = max(len(g) for g in groups)
    for group, options in groups.items():
        if group == "experiment":
            continue
        marked = [f"{o}*" if choices.get(group) == o else o for o in options]
        out.append(f"  {group:<{width}}  {', '.join(marked)}")
        for o in options:
            doc = option_doc(group, o)
            if doc:
                out.append(f"  {'':<{width}}    {o}: {doc}")
    if "experiment" in groups:
        out += ["", "Experiments (experiment=<name>; thin override files in conf/experiment/):"]
        names = groups["experiment"]
        w = max(len(n) for n in names)
        for name in names:
            mark = "*" if choices.get("experiment") == name else " "
            out.append(f"  {name:<{w}}{mark} {option_doc('experiment', name)}")
    return out + [""]


def _keys_section(schema: type, values: dict[str, Any]) -> list[str]:
    out = ["Keys (key: type = current value  # doc); set any of them as key=value:"]
    for info in schema_keys(schema):
        depth = info.key.count(".")
        indent = "  " * (depth + 1)
        if info.is_group:
            out.append(f"{indent}{info.key}:" + (f"  # {info.doc}" if info.doc else ""))
            continue
        value = _fmt_value(values.get(info.key)) if info.key in values else "(unset)"
        line = f"{indent}{info.key}: {info.type_name} = {value}"
        out.append(line + (f"  # {info.doc}" if info.doc else ""))
    return out


def help_text(cmd: Command, overrides: list[str]) -> str:
    """The ``--help`` text of a command under the given overrides.

    Raises:
        ConfigError: An override is invalid (the help would show a config that cannot exist).
    """
    if cmd.register is not None:
        cmd.register()
    schema = schema_for(cmd.config_name)
    if cmd.own_overrides is not None:
        overrides = cmd.own_overrides(overrides)
    cfg, choices = compose_with_choices(cmd.config_name, overrides)
    values = leaf_values(OmegaConf.to_container(cfg, resolve=False))
    summary = textwrap.fill(" ".join(cmd.summary.split()), width=110)
    lines = [f"usage: python -m {cmd.module} {cmd.synopsis} [--help] [--cfg job]", "", summary, ""]
    if cmd.examples:
        lines += ["Examples:", *(f"  {e}" for e in cmd.examples), ""]
    lines += _groups_section(cmd.config_name, choices)
    lines += _keys_section(schema, values)
    if cmd.notes:
        lines += ["", cmd.notes.strip()]
    lines += [
        "",
        "Overrides are Hydra overrides: key=value, +key=value and ++key=value all set a key; an unknown key is",
        "an error naming the closest valid one. --cfg job prints the resolved config and exits.",
    ]
    return "\n".join(lines) + "\n"


def config_yaml(cmd: Command, overrides: list[str]) -> str:
    """``--cfg job``: the resolved config the overrides give, as YAML (required values unset show ``???``)."""
    if cmd.config_yaml is not None:
        return cmd.config_yaml(overrides)
    cfg = cmd.compose(overrides)
    return OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


def one_line(err: BaseException) -> str:
    """An exception's message on one line.

    An error a DataLoader worker raised reaches the main process with the worker's traceback as its message;
    only the traceback's last line (the original message) is shown.
    """
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split()) or type(err).__name__


def report_error(err: BaseException) -> int:
    """Print ``error: <one line>`` on stderr; returns the exit status of a bad input (2)."""
    print(f"error: {one_line(err)}", file=sys.stderr)
    return 2


def run_command(
    cmd: Command,
    argv: Sequence[str] | None,
    body: Callable[[list[str]], int],
    errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Run an entry point: ``--help`` and ``--cfg job`` answered here, anything else handed to ``body``.

    Args:
        cmd: The command.
        argv: Arguments (``sys.argv[1:]`` when ``None``).
        body: Does the work for the overrides; returns the exit status.
        errors: Further exception types that mean bad input for this command (besides
            :data:`USER_ERRORS`).

    Returns:
        The exit status: 0 for ``--help``/``--cfg job``, 2 for bad input, else ``body``'s.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        flag, overrides = split_flags(args)
        if flag == "help":
            sys.stdout.write(help_text(cmd, overrides))
            return 0
        if flag == "cfg":
            sys.stdout.write(config_yaml(cmd, overrides))
            return 0
        return body(overrides)
    except (*USER_ERRORS, *errors) as err:
        return report_error(err)
