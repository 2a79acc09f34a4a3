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
