"""The provenance ledger: one row per candidate (each source video, and each clip cut from it).

Rows hold raw scores in their own columns and the thresholds that judged them as JSON, so a new
threshold can be applied to the stored scores (:func:`data_prep.decisions.redecide`) without
recomputing anything. Per-unit parts are written atomically and merged into ``ledger.parquet``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trainer.atomic import atomic_write_bytes

KEPT = "kept"
REJECTED = "rejected"
ERROR = "error"

SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("kind", pa.string()),  # "video", "clip", or "file" (an input file that is not a video)
        ("unit", pa.int32()),
        ("source", pa.string()),
        ("source_sha256", pa.string()),
        ("span_start", pa.int64()),  # source frames, end exclusive
        ("span_end", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("status", pa.string()),
        ("reason", pa.string()),  # reason code ("" when kept)
        ("stage", pa.string()),  # the stage that decided
        ("message", pa.string()),
        ("stages_ran", pa.list_(pa.string())),
        # probe
        ("fps", pa.float64()),
        ("bitrate_kbps", pa.float64()),
        ("num_frames", pa.int64()),
        ("duration_s", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("vfr", pa.bool_()),
        ("has_audio", pa.bool_()),
        ("audio_rate", pa.int32()),
        ("audio_channels", pa.int32()),
        # faces and scenes
        ("scene_cuts", pa.int32()),
        ("face_fraction", pa.float64()),  # frames with exactly one usable face
        ("face_min_side_px", pa.float64()),  # smallest face (shorter box side, px) over the frames
        # The quantities the face thresholds are checked against: the largest face of the clip's segment
        # (faces.min_face_px; on a video row the largest any segment reached), the segment's length
        # (faces.min_segment_s), the largest box jump (faces.max_jump) and second-face ratio
        # (faces.max_second_face_ratio) over the clip's frames.
        ("segment_face_px", pa.float64()),
        ("segment_s", pa.float64()),
        ("face_max_jump", pa.float64()),
        ("face_max_second_ratio", pa.float64()),
        # sync and quality
        ("sync_offset_frames", pa.int32()),
        ("sync_confidence", pa.float64()),
        ("sync_min_dist", pa.float64()),
        ("sync_offset_frames_corrected", pa.int32()),
        ("sync_confidence_corrected", pa.float64()),
        ("sync_min_dist_corrected", pa.float64()),
        ("quality_score", pa.float64()),
        # provenance
        ("thresholds", pa.string()),  # JSON
        ("config_fingerprint", pa.string()),
        ("model_fingerprints", pa.string()),  # JSON
        ("timings", pa.string()),  # JSON: seconds per stage
        ("shard", pa.string()),  # shard file holding a kept clip
    ]
)

COLUMNS = SCHEMA.names
# Columns that legitimately differ between two runs over the same inputs.
RUN_DEPENDENT = ("timings",)


def empty_row() -> dict:
    """A row with every column present and null."""
    return dict.fromkeys(COLUMNS)


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with any subset of columns) to a table in the ledger schema."""
    full = [{**empty_row(), **row} for row in rows]
    unknown = set().union(*(row.keys() for row in rows)) - set(COLUMNS) if rows else set()
    if unknown:
        raise KeyError(f"ledger rows carry unknown columns {sorted(unknown)}")
    return pa.Table.from_pylist(full, schema=SCHEMA)


def write_table(table: pa.Table, path: Path) -> None:
    """Write a ledger table as parquet, atomically."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    atomic_write_bytes(path, buf.getvalue())


def read_ledger(path: str | Path) -> pa.Table:
    """Read a ledger (or a unit part)."""
    return pq.read_table(str(path), schema=SCHEMA)


def merge_parts(parts: list[Path], path: Path) -> pa.Table:
    """Concatenate unit parts in unit order into ``path``."""
    tables = [read_ledger(p) for p in sorted(parts)]
    table = pa.concat_tables(tables) if tables else rows_to_table([])
    write_table(table, path)
    return table
