"""The paper's tables from per-clip metric rows: ``table2``/``table3`` (markdown and CSV) and ``metrics.csv``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from eval.config import MODES, TABLES
from trainer.atomic import atomic_write_text


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None and np.isfinite(v)]
    if not got:
        return float("inf") if any(v == float("inf") for v in values if v is not None) else None
    return float(np.mean(got))


def write_tables(
    out: Path,
    rows: list[dict],
    note: str = "",
    sync_label: str = "",
    set_level: dict[str, dict[str, float]] | None = None,
) -> dict[str, Path]:
    """``table2``/``table3`` (markdown and CSV), ``metrics.csv`` (every clip) from per-clip rows.

    Every table has a column for every metric; a metric that was not computed shows ``–`` (markdown) or an
    empty cell (CSV), and ``skipped.md`` says why.

    Args:
        out: Output folder.
        rows: One dict per clip and mode: ``mode``, ``clip``, the metrics, ``source_size``, ``sample_size``.
        note: Lines under each markdown table (how the samples were compared, how sync was computed).
        sync_label: The sync protocol (:func:`eval.metrics.sync_official.protocol_label`), a CSV column.
        set_level: ``mode → {metric: value}`` computed over the whole row (FID, FVD); they replace the mean of
            the per-clip values in the tables (a set-level metric the row could not compute shows ``–``).
    """
    from eval.metrics import METRIC_NAMES

    written = {}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["mode", "clip", "source_size", "sample_size", *METRIC_NAMES])
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in writer.fieldnames})
    atomic_write_text(out / "metrics.csv", buf.getvalue())
    written["metrics"] = out / "metrics.csv"
    cols = list(METRIC_NAMES)
    for table, modes in TABLES.items():
        present = [m for m in modes if any(r["mode"] == m for r in rows)]
        if not present:
            continue
        means = {m: {k: _mean([r.get(k) for r in rows if r["mode"] == m]) for k in cols} for m in present}
        for m in present:
            if set_level is not None:
                means[m].update({k: set_level.get(m, {}).get(k) for k in SET_LEVEL})
        md = [f"| setting | clips | {' | '.join(cols)} |", "| --- | --- |" + " --- |" * len(cols)]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["setting", "clips", *cols, "sync_protocol"])
        for m in present:
            n = sum(r["mode"] == m for r in rows)
            vals = [means[m][k] for k in cols]
            md.append(f"| {MODES[m][1]} | {n} | " + " | ".join("–" if v is None else f"{v:.4g}" for v in vals) + " |")
            w.writerow([m, n, *["" if v is None else v for v in vals], sync_label])
        if note:
            md += ["", note, "– : not computed (see skipped.md)."]
        atomic_write_text(out / f"{table}.md", "\n".join(md) + "\n")
        atomic_write_text(out / f"{table}.csv", buf.getvalue())
        written[table] = out / f"{table}.md"
    return written


# Metrics the tables report over the whole row rather than as the mean of per-clip values.
SET_LEVEL = ("fid", "fvd")
