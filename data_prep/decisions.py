"""Decisions from scores: the only place thresholds meet scores.

The pipeline decides with these functions as scores arrive, and :func:`redecide` applies them again to a
stored ledger, so a new threshold for the probe, SyncNet or HyperIQA filters needs no recomputation.
(Face and scene settings move clip boundaries, so changing them means re-running the pipeline; the
score cache then still skips every clip whose scores exist.)
"""

from __future__ import annotations

import json
import math

import pyarrow as pa

from data_prep.config import DataPrepConfig
from data_prep.frame_rate import SYNCNET_FPS
from data_prep.ledger import KEPT, REJECTED
from data_prep.probe import ProbeResult, probe_rejection

SYNC_LOW_CONFIDENCE = "sync_low_confidence"
SYNC_OFFSET = "sync_offset"
LOW_QUALITY = "low_quality"


def thresholds_json(cfg: DataPrepConfig) -> str:
    """The thresholds of every enabled stage, as canonical JSON (a stage that is off judged nothing)."""
    thresholds = {
        "probe": {
            "min_fps": cfg.probe.min_fps,
            "max_fps": cfg.probe.max_fps,
            "min_bitrate_kbps": cfg.probe.min_bitrate_kbps,
            "min_frames": cfg.probe.min_frames,
            "require_audio": cfg.probe.require_audio,
        },
        "scenes": {"threshold": cfg.scenes.threshold, "min_scene_len": cfg.scenes.min_scene_len},
        "faces": {
            "min_face_px": cfg.faces.min_face_px,
            "max_second_face_ratio": cfg.faces.max_second_face_ratio,
            "max_jump": cfg.faces.max_jump,
            "max_missing_frames": cfg.faces.max_missing_frames,
            "min_segment_s": cfg.faces.min_segment_s,
        },
        "sync": {"min_confidence": cfg.sync.min_confidence, "max_offset_ms": cfg.sync.max_offset_ms},
        "quality": {"min_score": cfg.quality.min_score},
    }
    enabled = {
        "scenes": cfg.scenes.enabled,
        "faces": cfg.faces.enabled,
        "sync": cfg.sync.enabled,
        "quality": cfg.quality.enabled,
    }
    return json.dumps({k: v for k, v in thresholds.items() if enabled.get(k, True)}, sort_keys=True)


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def sync_decision(row: dict, cfg: DataPrepConfig) -> tuple[str, str] | None:
    """``(reason, message)`` when the SyncNet scores of a clip row fail, else ``None``.

    With offset correction on, the re-check after shifting the audio decides.
    """
    if not cfg.sync.enabled:
        return None
    corrected = cfg.sync.correct_offset and _present(row.get("sync_confidence_corrected"))
    conf = row["sync_confidence_corrected"] if corrected else row["sync_confidence"]
    offset = row["sync_offset_frames_corrected"] if corrected else row["sync_offset_frames"]
    if conf < cfg.sync.min_confidence:
        return SYNC_LOW_CONFIDENCE, f"SyncNet confidence {conf:.2f} < {cfg.sync.min_confidence}"
    offset_ms = abs(offset) * 1000.0 / SYNCNET_FPS  # SyncNet scores every clip's 25 fps view
    if offset_ms > cfg.sync.max_offset_ms:
        return SYNC_OFFSET, f"AV offset {offset} frames ({offset_ms:.0f} ms) > {cfg.sync.max_offset_ms} ms"
    return None


def quality_decision(row: dict, cfg: DataPrepConfig) -> tuple[str, str] | None:
    """``(reason, message)`` when the HyperIQA score of a clip row fails, else ``None``."""
    if not cfg.quality.enabled:
        return None
    if row["quality_score"] < cfg.quality.min_score:
        return LOW_QUALITY, f"HyperIQA {row['quality_score']:.1f} < {cfg.quality.min_score}"
    return None


def probe_of_row(row: dict) -> ProbeResult:
    """The probe values stored in a video row."""
    return ProbeResult(
        size_bytes=0,
        format_name="",
        duration_s=row["duration_s"] or 0.0,
        bitrate_kbps=row["bitrate_kbps"] or 0.0,
        has_video=True,
        has_audio=bool(row["has_audio"]),
        fps=row["fps"] or 0.0,
        num_frames=row["num_frames"] or 0,
    )


def redecide(table: pa.Table, cfg: DataPrepConfig) -> pa.Table:
    """Apply ``cfg``'s probe, SyncNet and HyperIQA thresholds to the scores stored in a ledger.

    Rows decided by other stages (decoding, faces, scenes) keep their decision; a clip whose scores are
    missing because an earlier filter stopped it is left as it was.

    Returns:
        The table with ``status``, ``reason``, ``stage``, ``message`` and ``thresholds`` updated.
    """
    rows = table.to_pylist()
    thresholds = thresholds_json(cfg)
    for row in rows:
        row["thresholds"] = thresholds
        if row["kind"] == "video" and row["stage"] in ("probe", "done") and row["fps"] is not None:
            failed = probe_rejection(probe_of_row(row), cfg.probe)
            if failed:
                row.update(status=REJECTED, reason=failed[0], message=failed[1], stage="probe")
            elif row["stage"] == "probe":
                row.update(status=KEPT, reason="", message="passes the probe filters; rerun to process it")
        if row["kind"] != "clip" or row["stage"] not in ("sync", "quality", "done"):
            continue
        has_sync = _present(row["sync_confidence"])
        has_quality = _present(row["quality_score"])
        failed = sync_decision(row, cfg) if has_sync else None
        stage = "sync"
        if failed is None and has_quality:
            failed, stage = quality_decision(row, cfg), "quality"
        if failed is not None:
            row.update(status=REJECTED, reason=failed[0], message=failed[1], stage=stage)
        elif (not cfg.sync.enabled or has_sync) and (not cfg.quality.enabled or has_quality):
            row.update(status=KEPT, reason="", message="", stage="done")
    return pa.Table.from_pylist(rows, schema=table.schema)
