"""Small, strict helpers for reading weight files that may come from anywhere."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file


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
        ``None`` when they match, else e.g. ``"2 shape mismatches (first: k: file (3,) vs model (4,));
        1 missing keys (first: …)"``.
    """
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(expected)
        if k in found and found[k].shape != expected[k].shape
    ]
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (first: {shapes[0]})")
    if missing:
        parts.append(f"{len(missing)} missing keys (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
    return "; ".join(parts) or None
