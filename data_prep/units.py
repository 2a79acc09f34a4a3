"""Deterministic work units: which videos each unit holds, where its outputs go, and running one.

A unit's outputs are its shards (``shards/uNNNNN-MMMMMM.tar`` + index), its ledger part
(``ledger_parts/unit-NNNNN.parquet``) and, written last, its done marker (``units/unit-NNNNN.json``).
A unit without a marker (never run, or killed) is run again from scratch and writes the same bytes; a
unit whose marker carries the current config fingerprint is skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from data_prep.config import DataPrepConfig
from data_prep.ledger import ERROR, KEPT, REJECTED, read_ledger, rows_to_table, write_table
from data_prep.models import Models
from trainer.atomic import atomic_write_text
from trainer.config.compose import to_container

SHARDS = "shards"
PARTS = "ledger_parts"
MARKERS = "units"
PLAN = "plan.json"


UNSUPPORTED_FILE = "unsupported_file"
UNREADABLE = "unreadable"
OTHER_FILES_PART = "other-files.parquet"


def _is_entry(p: Path) -> bool:
    # A broken symlink is not a file (is_file() follows the link) but still an input the user gave.
    return p.is_file() or (p.is_symlink() and not p.exists())


def input_files(cfg: DataPrepConfig) -> tuple[list[Path], list[Path]]:
    """The input's video candidates and its other files, each in a deterministic order.

    ``input_dir`` is searched recursively: files whose extension is one of ``video_extensions`` (broken
    symlinks included, so that they get their row) are video candidates, sorted by relative path; every other
    file is listed too, so that it gets a ledger row saying why it was not processed, except caption sidecars
    (``<video stem><suffix>``, read with their video). ``input_list`` is read line by line (blank lines and
    ``#`` comments skipped, relative paths resolved against the list's folder); every entry is a video
    candidate, and entries that do not exist still get a ledger row.

    Returns:
        ``(videos, other files)``.

    Raises:
        FileNotFoundError: The input folder or list does not exist.
    """
    if cfg.input_dir is not None:
        root = Path(cfg.input_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"input_dir {root} is not a folder")
        exts = {e.lower() for e in cfg.video_extensions}
        entries = sorted((p for p in root.rglob("*") if _is_entry(p)), key=lambda p: str(p.relative_to(root)))
        videos = [p for p in entries if p.suffix.lower() in exts]
        stems = {(p.parent, p.stem) for p in videos}
        sidecar = {s.lower() for s in cfg.features.caption_sidecar_suffixes}
        others = [
            p
            for p in entries
            if p.suffix.lower() not in exts
            and not any(p.name.lower().endswith(s) and (p.parent, p.name[: -len(s)]) in stems for s in sidecar)
        ]
        return videos, others
    listing = Path(cfg.input_list)
    if not listing.is_file():
        raise FileNotFoundError(f"input_list {listing} does not exist")
    out = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)
            out.append(p if p.is_absolute() else listing.parent / p)
    return out, []


def list_inputs(cfg: DataPrepConfig) -> list[Path]:
    """The input's video candidates (:func:`input_files`)."""
    return input_files(cfg)[0]


def other_file_rows(cfg: DataPrepConfig, others: list[Path]) -> list[dict]:
    """Ledger rows (kind ``file``) of the input files that are not processed, each with its reason."""
    exts = ", ".join(cfg.video_extensions)
    rows = []
    for path in others:
        row = {
            "clip_id": hashlib.sha256(f"file:{path}".encode()).hexdigest()[:20],
            "kind": "file",
            "source": str(path),
            "stage": "input",
            "stages_ran": [],
        }
        if path.is_symlink() and not path.exists():
            row.update(status=ERROR, reason=UNREADABLE, message=f"broken symbolic link to {os.readlink(path)}")
        else:
            row.update(
                status=REJECTED,
                reason=UNSUPPORTED_FILE,
                message=f"not processed: extension {path.suffix or '(none)'!r} is not one of video_extensions "
                f"[{exts}]; add it there if the file is a video",
            )
        rows.append(row)
    return rows


def write_other_files(cfg: DataPrepConfig, others: list[Path]) -> None:
    """Write the rows of the input's non-video files as a ledger part (idempotent: every array task may)."""
    write_table(rows_to_table(other_file_rows(cfg, others)), Path(cfg.output_dir) / PARTS / OTHER_FILES_PART)


def make_units(videos: list[Path], per_unit: int) -> list[list[Path]]:
    """Consecutive groups of ``per_unit`` videos (the last may be shorter)."""
    return [videos[i : i + per_unit] for i in range(0, len(videos), per_unit)]


def config_fingerprint(cfg: DataPrepConfig) -> str:
    """Hash of everything that changes a unit's outputs (execution settings excluded)."""
    data = to_container(cfg)
    for key in ("execution", "input_dir", "input_list", "output_dir"):
        data.pop(key, None)
    data["execution"] = {"samples_per_shard": cfg.execution.samples_per_shard}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class UnitPaths:
    """Output locations of one unit."""

    root: Path
    unit: int

    @property
    def prefix(self) -> str:
        """Shard file prefix."""
        return f"u{self.unit:05d}"

    @property
    def shards(self) -> Path:
        """Shard folder (shared by all units)."""
        return self.root / SHARDS

    @property
    def part(self) -> Path:
        """Ledger part of the unit."""
        return self.root / PARTS / f"unit-{self.unit:05d}.parquet"

    @property
    def marker(self) -> Path:
        """Done marker of the unit."""
        return self.root / MARKERS / f"unit-{self.unit:05d}.json"


@dataclass
class UnitResult:
    """Summary of a processed (or skipped) unit."""

    unit: int
    videos: int
    rows: int
    kept_clips: int
    kept_hours: float
    source_seconds: float
    skipped: bool


def is_done(paths: UnitPaths, fingerprint: str) -> bool:
    """The unit finished with this config."""
    if not paths.marker.is_file():
        return False
    try:
        marker = json.loads(paths.marker.read_text())
    except json.JSONDecodeError:
        return False
    return marker.get("config_fingerprint") == fingerprint and paths.part.is_file()


def score_cache(paths: UnitPaths, models: Models) -> dict[str, dict]:
    """SyncNet/HyperIQA scores of an earlier run of this unit whose models had the same weights."""
    if not paths.part.is_file():
        return {}
    cache: dict[str, dict] = {}
    current = models.fingerprints
    for row in read_ledger(paths.part).to_pylist():
        if row["kind"] != "clip":
            continue
        try:
            old = json.loads(row["model_fingerprints"] or "{}")
        except json.JSONDecodeError:
            continue
        entry = {}
        if old.get("syncnet") == current.get("syncnet") and row["sync_confidence"] is not None:
            entry.update({k: v for k, v in row.items() if k.startswith("sync_")})
        if old.get("hyperiqa") == current.get("hyperiqa") and row["quality_score"] is not None:
            entry["quality_score"] = row["quality_score"]
        if entry:
            cache[row["clip_id"]] = entry
    return cache


def _clear_unit_outputs(paths: UnitPaths) -> None:
    """Remove shards and temporary files an interrupted attempt of this unit left behind."""
    if paths.shards.is_dir():
        for f in paths.shards.iterdir():
            name = f.name
            if name.startswith(f"{paths.prefix}-") or name.startswith(f".{paths.prefix}-"):
                f.unlink()


def process_unit(cfg: DataPrepConfig, unit: int, videos: list[Path], models: Models) -> UnitResult:
    """Run (or skip, when already done) one unit.

    Returns:
        The unit's summary.
    """
    from data_prep.pipeline import VideoProcessor  # the media stack loads only where videos are processed
    from data_prep.shard_writer import ShardWriter

    paths = UnitPaths(Path(cfg.output_dir), unit)
    fingerprint = config_fingerprint(cfg)
    if is_done(paths, fingerprint):
        return summarize(unit, len(videos), read_ledger(paths.part), skipped=True)
    cache = score_cache(paths, models)
    _clear_unit_outputs(paths)
    processor = VideoProcessor(cfg, models, fingerprint, cache)
    rows: list[dict] = []
    with ShardWriter(paths.shards, samples_per_shard=cfg.execution.samples_per_shard, prefix=paths.prefix) as writer:

        def emit(sample: dict) -> str:
            name = writer.shard_path(writer.index).name
            writer.write(sample)
            return name

        for video in videos:
            rows.extend(processor.process(Path(video), unit, emit))
    table = rows_to_table(rows)
    write_table(table, paths.part)
    atomic_write_text(
        paths.marker,
        json.dumps(
            {
                "unit": unit,
                "config_fingerprint": fingerprint,
                "videos": [str(v) for v in videos],
                "rows": len(rows),
                "shards": [p.name for p in writer.written],
            },
            indent=1,
        ),
    )
    return summarize(unit, len(videos), table, skipped=False)


def summarize(unit: int, videos: int, table: pa.Table, skipped: bool) -> UnitResult:
    """Counts and hours of a unit's ledger part."""
    rows = table.to_pylist()
    clips = [r for r in rows if r["kind"] == "clip" and r["status"] == KEPT]
    kept_s = sum((r["end_s"] or 0) - (r["start_s"] or 0) for r in clips)
    source_s = sum(r["duration_s"] or 0 for r in rows if r["kind"] == "video")
    return UnitResult(unit, videos, len(rows), len(clips), kept_s / 3600.0, source_s, skipped)


def write_plan(cfg: DataPrepConfig, units: list[list[Path]]) -> None:
    """Record the unit partition (the SLURM array size comes from it)."""
    plan = {"units": [[str(v) for v in u] for u in units], "config_fingerprint": config_fingerprint(cfg)}
    atomic_write_text(Path(cfg.output_dir) / PLAN, json.dumps(plan, indent=1))


def array_size(num_videos: int, per_unit: int) -> int:
    """Units for ``num_videos`` videos."""
    return math.ceil(num_videos / per_unit) if num_videos else 0
