"""Atomic file writes: a temporary file in the destination folder, then one rename.

A reader (or a rerun after a crash) sees either the old file or the complete new one, never a
partial write. Every writer in talkdit goes through these helpers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps the destination's suffix so that writers choosing a format by
    extension (``.mp4``, ``.safetensors``) behave as for the final name. On error it is removed.

    Args:
        path: Final destination.

    Yields:
        The temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; the final file should get the permissions any new file gets.
    os.chmod(tmp_path, 0o666 & ~current_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def current_umask() -> int:
    """The process umask (read without changing it for more than an instant)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; rename it onto ``path`` if the block succeeds.

    A reader sees no folder, the old one or the complete new one; on error the temporary folder is removed.

    Args:
        path: Final folder.
        overwrite: Replace an existing ``path`` (else it is an error).

    Yields:
        The temporary folder to fill.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=true to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
        mode = 0o666 & ~current_umask()
        for f in tmp.rglob("*"):
            if f.is_file():
                f.chmod(mode)  # safetensors writes 0600; outputs are meant to be shared
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
