"""Shard lists from the patterns users write (torch-free: entry points check them before loading a model)."""

from __future__ import annotations

import glob
import os

from braceexpand import braceexpand


def expand_shards(spec: str, key: str = "data.shards") -> list[str]:
    """Shard paths from a brace pattern, glob or comma-separated list (deduplicated, in order).

    Args:
        spec: The pattern.
        key: The option that holds it, for error messages.

    Raises:
        FileNotFoundError: A local pattern matches no file (the option and the pattern are named).
    """
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        for item in braceexpand(part):
            if "://" in item or item.startswith("pipe:"):
                out.append(item)
                continue
            matches = sorted(glob.glob(item)) if glob.has_magic(item) else ([item] if os.path.isfile(item) else [])
            if not matches:
                raise FileNotFoundError(f"{key}: no shard file matches {item!r}")
            out.extend(matches)
    if not out:
        raise FileNotFoundError(f"{key}={spec!r} names no shard")
    return list(dict.fromkeys(out))
