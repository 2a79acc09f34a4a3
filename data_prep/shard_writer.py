"""Writing WebDataset tar shards atomically, each with a JSON index of its samples."""

from __future__ import annotations

import contextlib
import json
import tarfile
from pathlib import Path
from types import TracebackType

import webdataset as wds

from trainer.atomic import atomic_path, atomic_write_text


class ShardWriter:
    """Write samples into ``<out_dir>/<prefix>-NNNNNN.tar`` shards of at most ``samples_per_shard``.

    A shard is written under a temporary name and renamed when complete, together with
    ``<prefix>-NNNNNN.idx.json`` (keys and members in order); a crash leaves no partial shard behind.

    Args:
        out_dir: Output folder.
        samples_per_shard: Samples per shard.
        prefix: File name prefix.
        start_index: Number of the first shard.
    """

    def __init__(self, out_dir: str | Path, samples_per_shard: int = 100, prefix: str = "shard", start_index: int = 0):
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        self.out_dir = Path(out_dir)
        self.samples_per_shard = samples_per_shard
        self.prefix = prefix
        self.index = start_index
        self.written: list[Path] = []
        self._ctx = None
        self._tmp: Path | None = None
        self._tar: wds.TarWriter | None = None
        self._entries: list[dict] = []

    def _open(self) -> None:
        self._ctx = atomic_path(self.shard_path(self.index))
        self._tmp = self._ctx.__enter__()
        # A fixed member mtime makes the tar bytes a function of the samples alone (reruns write identical shards).
        self._tar = wds.TarWriter(str(self._tmp), mtime=0.0)
        self._entries = []

    def shard_path(self, index: int) -> Path:
        """Path of shard number ``index``."""
        return self.out_dir / f"{self.prefix}-{index:06d}.tar"

    def write(self, sample: dict) -> None:
        """Add one sample: ``{"__key__": clip_id, "<member>": bytes, ...}`` (members without the key)."""
        key = sample.get("__key__")
        if not key or "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must be non-empty without '.' or '/'")
        if self._tar is None:
            self._open()
        self._tar.write(sample)
        self._entries.append({"key": key, "members": sorted(k for k in sample if not k.startswith("__"))})
        if len(self._entries) >= self.samples_per_shard:
            self._close()

    def _close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        path = self.shard_path(self.index)
        self._ctx.__exit__(None, None, None)
        atomic_write_text(
            path.with_suffix(".idx.json"),
            json.dumps({"shard": path.name, "samples": self._entries}, indent=1),
        )
        self.written.append(path)
        self._tar, self._ctx, self._tmp = None, None, None
        self.index += 1

    def close(self) -> list[Path]:
        """Finish the open shard; returns every shard written."""
        self._close()
        return self.written

    def abort(self) -> None:
        """Drop the open shard (its temporary file is removed)."""
        if self._tar is not None:
            self._tar.close()
            # Closing the atomic-path context with an error removes the temporary file, renames nothing.
            with contextlib.suppress(RuntimeError):
                self._ctx.__exit__(RuntimeError, RuntimeError("shard aborted"), None)
            self._tar, self._ctx, self._tmp = None, None, None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def shard_keys(path: str | Path) -> list[str]:
    """Sample keys of a shard in order (read from the tar itself)."""
    keys: list[str] = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key = member.name.split("/")[-1].split(".", 1)[0]
            if not keys or keys[-1] != key:
                keys.append(key)
    return keys
