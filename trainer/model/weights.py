"""Small, strict helpers for reading weight files that may come from anywhere."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn


def require_file(path: Path, source_hint: str) -> Path:
    """Return ``path`` if it is a file, else raise an error naming it and where it comes from.

    Args:
        path: Expected weight or config file.
        source_hint: Sentence saying where the file is obtained.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing weight file {path}; {source_hint}")
    return path


def load_safetensors_checked(path: Path) -> dict[str, torch.Tensor]:
    """Load a ``.safetensors`` file on the CPU, with the file named in any error.

    Args:
        path: The file.

    Returns:
        Tensor name to tensor.

    Raises:
        ValueError: The file is not a readable safetensors file.
    """
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


def state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """Describe how ``found`` differs from ``expected`` key for key and shape for shape.

    Args:
        expected: The model's tensors.
        found: The file's tensors.

    Returns:
        ``None`` when they match, else e.g. ``"2 shape mismatches (first: k: file (3,) vs model (4,), …);
        1 missing keys (first: …)"`` (up to three keys of each kind).
    """
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(expected)
        if k in found and found[k].shape != expected[k].shape
    ]
    parts = [
        f"{len(items)} {what} (first: {', '.join(items[:3])})"
        for what, items in (("shape mismatches", shapes), ("missing keys", missing), ("unexpected keys", unexpected))
        if items
    ]
    return "; ".join(parts) or None


def read_state_dict(path: str | os.PathLike, layout: str) -> dict[str, torch.Tensor]:
    """Read a ``torch.save`` state dict on the CPU with ``weights_only=True`` (a pickled module is refused).

    Args:
        path: The file.
        layout: What the file should hold, for messages (e.g. ``"the official S3FD (sfd_face.pth) layout"``).

    Returns:
        Tensor name to tensor.

    Raises:
        ValueError: The file is unreadable or holds something other than tensors by name; the message names
            the file and ``layout``.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a plain state dict"
        raise ValueError(
            f"{os.fspath(path)} is not a state dict readable with weights_only=True ({layout}): {exc}"
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{os.fspath(path)} does not hold a state dict of tensors (got {type(state).__name__}; expected {layout})"
        )
    return dict(state)


def load_strict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    layout: str,
    may_lack: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``model`` only if it matches key for key and shape for shape.

    Args:
        model: The network, built in the file's architecture.
        state: The file's tensors.
        path: The file, for messages.
        layout: What the file should hold, for messages.
        may_lack: Key suffixes the file may lack, the model keeping its own value (BatchNorm's
            ``.num_batches_tracked`` counters, absent from files written before PyTorch 0.4.1 and unused in
            eval mode).

    Raises:
        ValueError: Keys or shapes differ; the message names the file, ``layout`` and the first differing keys.
    """
    expected = model.state_dict()
    if may_lack:
        state = {**{k: v for k, v in expected.items() if k.endswith(may_lack)}, **state}
    problem = state_mismatch(expected, state)
    if problem:
        raise ValueError(f"{os.fspath(path)} does not match {layout}: {problem}")
    model.load_state_dict(state, strict=True)
