"""Report of a data_prep run: counts and hours by status and reason, and a bar chart of rejections.

``python -m data_prep.report output_dir=<dir>`` rebuilds ``report.md`` and ``report.png`` from
``ledger.parquet``. Threshold overrides (``sync.min_confidence=2``, ``probe.min_bitrate_kbps=500`` …)
re-decide the stored scores first (no recomputation) and write ``ledger_redecided.parquet`` beside it.
"""

from __future__ import annotations

import io
import json
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data_prep.config import register
from data_prep.ledger import ERROR, KEPT, read_ledger, write_table
from trainer.atomic import atomic_write_bytes, atomic_write_text
from trainer.config.cli import Command, run_command
from trainer.config.errors import ConfigError
from trainer.config.keys import check_overrides


def _hours(rows: list[dict], kind: str) -> float:
    key = "duration_s" if kind == "video" else None
    total = 0.0
    for r in rows:
        total += (r[key] or 0.0) if key else ((r["end_s"] or 0.0) - (r["start_s"] or 0.0))
    return total / 3600.0


KINDS = ("video", "clip", "file")
# Threshold groups of the ledger's thresholds JSON, each judged only by the stage of the same name.
THRESHOLD_STAGES = ("probe", "scenes", "faces", "sync", "quality")


def summarize(table: pa.Table) -> dict:
    """Counts and hours per kind, status and reason; the stages that ran and their thresholds."""
    rows = table.to_pylist()
    out: dict = {}
    for kind in KINDS:
        sel = [r for r in rows if r["kind"] == kind]
        by_status: dict[str, list[dict]] = defaultdict(list)
        by_reason: dict[str, list[dict]] = defaultdict(list)
        for r in sel:
            by_status[r["status"]].append(r)
            if r["status"] != KEPT:
                by_reason[r["reason"]].append(r)
        out[kind] = {
            "total": len(sel),
            "hours": _hours(sel, kind),
            "status": {s: {"count": len(v), "hours": _hours(v, kind)} for s, v in sorted(by_status.items())},
            "reasons": {
                k: {"count": len(v), "hours": _hours(v, kind)}
                for k, v in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
            },
        }
    ran = sorted({s for r in rows for s in (r["stages_ran"] or [])})
    out["stages_ran"] = ran

    def of_stages_that_ran(text: str) -> dict:
        return {k: v for k, v in json.loads(text).items() if k in ran or k not in THRESHOLD_STAGES}

    sets = sorted({r["thresholds"] for r in rows if r["thresholds"]})
    out["thresholds"] = of_stages_that_ran(sets[0]) if len(sets) == 1 else [of_stages_that_ran(t) for t in sets]
    return out


def render_markdown(summary: dict) -> str:
    """The report as markdown."""
    v, c, f = summary["video"], summary["clip"], summary["file"]
    lines = [
        "# Data preparation report",
        "",
        f"- source videos: {v['total']} ({v['hours']:.3f} h)",
        f"- clip candidates: {c['total']} ({c['hours']:.3f} h); kept "
        f"{c['status'].get(KEPT, {}).get('count', 0)} ({c['status'].get(KEPT, {}).get('hours', 0.0):.3f} h)",
        f"- stages that ran: {', '.join(summary['stages_ran']) or 'none'}",
    ]
    if f["total"]:
        lines.append(f"- other input files, not processed: {f['total']} (by reason below)")
    lines.append("")
    for title, part in (("Videos", v), ("Clips", c)):
        lines += [f"## {title} by status", "", "| status | count | hours |", "| --- | ---: | ---: |"]
        lines += [f"| {s} | {d['count']} | {d['hours']:.3f} |" for s, d in part["status"].items()]
        lines += ["", f"## {title} rejected, by reason", "", "| reason | count | hours |", "| --- | ---: | ---: |"]
        lines += [f"| {r} | {d['count']} | {d['hours']:.3f} |" for r, d in part["reasons"].items()]
        lines.append("")
    if f["total"]:
        lines += ["## Input files not processed, by reason", "", "| reason | count |", "| --- | ---: |"]
        lines += [f"| {r} | {d['count']} |" for r, d in f["reasons"].items()]
        lines.append("")
    lines += ["## Thresholds of the stages that ran", "", "```json", json.dumps(summary["thresholds"], indent=2)]
    lines += ["```", "", "![rejection reasons](report.png)", ""]
    return "\n".join(lines)


def chart_figure(summary: dict):
    """The matplotlib figure of the rejections by reason, like EditYourself's Fig. 11.

    One panel per kind (videos, clips, other input files) that has rejections, counts on a whole-number axis;
    when nothing was rejected, one panel with the counts by status.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    colours = {"video": "#c0504d", "clip": "#4f81bd", "file": "#9bbb59"}
    kinds = [k for k in KINDS if summary[k]["reasons"]]
    panels = len(kinds) or 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), constrained_layout=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        reasons = summary[kind]["reasons"]
        names = list(reasons)
        ax.barh(names[::-1], [reasons[n]["count"] for n in names][::-1], color=colours[kind])
        kept = summary[kind]["status"].get(KEPT, {}).get("count", 0)
        label = "other input files" if kind == "file" else f"{kind}s"
        ax.set_title(f"{label} rejected by reason (kept: {kept} of {summary[kind]['total']})")
        ax.set_xlabel("count")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not kinds:
        ax = axes[0][0]
        labels = [f"{kind}s {status}" for kind in KINDS for status in summary[kind]["status"]]
        counts = [d["count"] for kind in KINDS for d in summary[kind]["status"].values()]
        if labels:
            ax.barh(labels[::-1], counts[::-1], color="#4f81bd")
            ax.set_title("nothing rejected: counts by status")
            ax.set_xlabel("count")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.text(0.5, 0.5, "the ledger has no rows", ha="center", va="center")
            ax.set_axis_off()
    return fig


def render_chart(summary: dict) -> bytes:
    """:func:`chart_figure` as PNG bytes."""
    import matplotlib.pyplot as plt

    fig = chart_figure(summary)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(table: pa.Table, out_dir: Path) -> dict:
    """Write ``report.md`` and ``report.png`` into ``out_dir`` (atomically); returns the summary."""
    summary = summarize(table)
    atomic_write_text(out_dir / "report.md", render_markdown(summary))
    atomic_write_bytes(out_dir / "report.png", render_chart(summary))
    return summary


# Keys whose new value re-decides stored scores; any other key changes what is computed.
REDECIDABLE = (
    "probe.min_fps",
    "probe.max_fps",
    "probe.min_bitrate_kbps",
    "probe.min_frames",
    "probe.require_audio",
    "sync.enabled",
    "sync.min_confidence",
    "sync.max_offset_ms",
    "sync.correct_offset",
    "quality.enabled",
    "quality.min_score",
)


def _output_dir(overrides: list[str]) -> tuple[Path, list[str]]:
    """``output_dir`` from the overrides (its ledger must exist), and the threshold overrides (keys checked).

    Raises:
        ConfigError: No ``output_dir``, an unknown key, or a key that cannot change without recomputing.
        FileNotFoundError: ``output_dir`` holds no ledger.
    """
    from data_prep.config import DataPrepConfig

    checked = check_overrides(DataPrepConfig, overrides, {}, "the data preparation config")
    outs = [a for a in checked if a.startswith("output_dir=")]
    rest = [a for a in checked if not a.startswith("output_dir=")]
    for text in rest:
        key = text.lstrip("+~").split("=", 1)[0]
        if key not in REDECIDABLE:
            raise ConfigError(
                key, text.split("=", 1)[-1], "changes what is computed, not a threshold; rerun python -m data_prep.run"
            )
    if not outs:
        raise ConfigError("output_dir", None, "is required: the folder python -m data_prep.run wrote")
    out = Path(outs[-1].split("=", 1)[1])
    if not (out / "ledger.parquet").is_file():
        raise FileNotFoundError(
            f"output_dir={out}: {out / 'ledger.parquet'} does not exist (run python -m data_prep.run)"
        )
    return out, rest


def redecision_config(out: Path, overrides: list[str]):
    """The run's saved config with threshold overrides (checked by :func:`_output_dir`) applied and validated.

    Raises:
        ConfigError: A value of the wrong type, or a broken rule.
    """
    from data_prep.config import DataPrepConfig, validate_data_prep_config

    checked = overrides
    saved = OmegaConf.load(out / "config.yaml") if (out / "config.yaml").is_file() else {}
    try:
        cfg = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(DataPrepConfig), saved, OmegaConf.from_dotlist(checked))
        )
    except OmegaConfBaseException as err:
        raise ConfigError(str(getattr(err, "full_key", "<config>")), None, " ".join(str(err).split())) from err
    validate_data_prep_config(cfg)
    return cfg


def _redecision_yaml(overrides: list[str]) -> str:
    out, rest = _output_dir(overrides)
    return OmegaConf.to_yaml(OmegaConf.structured(redecision_config(out, rest)))


COMMAND = Command(
    module="data_prep.report",
    config_name="data_prep",
    synopsis="output_dir=<data_prep output folder> [threshold overrides ...]",
    summary=f"""Rebuild report.md and report.png of a data_prep run from its ledger.parquet. Threshold overrides
re-decide the stored scores without recomputing anything and write ledger_redecided.parquet beside the ledger;
the keys that can change this way: {", ".join(REDECIDABLE)}. The other keys are shown with their defaults;
changing them means rerunning python -m data_prep.run.""",
    examples=(
        "python -m data_prep.report output_dir=/data/prep",
        "python -m data_prep.report output_dir=/data/prep sync.min_confidence=4 quality.min_score=45",
    ),
    register=register,
    config_yaml=_redecision_yaml,
)


def _report(overrides: list[str]) -> int:
    from data_prep.decisions import redecide

    out, rest = _output_dir(overrides)
    table = read_ledger(out / "ledger.parquet")
    if rest:
        table = redecide(table, redecision_config(out, rest))
        write_table(table, out / "ledger_redecided.parquet")
    summary = write_report(table, out)
    errors = summary["video"]["status"].get(ERROR, {}).get("count", 0)
    print(f"report: {out / 'report.md'}, {out / 'report.png'} ({errors} videos with errors)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point: ``output_dir=<dir> [threshold overrides]``; bad input exits with status 2."""
    return run_command(COMMAND, argv, _report)


if __name__ == "__main__":
    sys.exit(main())
