"""What data_prep tells a user about their input: errors before anything is written, a row for every file,
every missing weight file at once, the quantities the thresholds checked, and a report without noise."""

from __future__ import annotations

import json
import os

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.ledger import rows_to_table
from data_prep.media import write_mp4
from data_prep.report import chart_figure, render_markdown, summarize
from data_prep.run import load_config, main, run
from tests.data_prep.conftest import prep_overrides


def _mpg(path, frames: int = 30) -> None:
    """An MPEG-1 program stream (.mpg): a container and codec data_prep's list used to skip silently."""
    with av.open(str(path), "w", format="mpeg") as c:
        v = c.add_stream("mpeg1video", rate=25)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 8 * i % 255, np.uint8), format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))


def test_an_empty_input_is_an_error_and_nothing_is_created(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    out = tmp_path / "out"
    assert main([f"input_dir={tmp_path / 'raw'}", f"output_dir={out}", "audio=tiny", "sync.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no video" in err and str(tmp_path / "raw") in err
    (tmp_path / "raw" / "notes.dat").write_text("x")
    assert main([f"input_dir={tmp_path / 'raw'}", f"output_dir={out}", "audio=tiny", "sync.enabled=false"]) == 2
    assert "holds no video (1 other files)" in capsys.readouterr().err
    assert not out.exists()


def test_every_input_file_gets_a_row_with_its_reason(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_mp4(raw / "short.mp4", np.zeros((20, 64, 64, 3), np.uint8), 25.0)
    (raw / "short.txt").write_text("a caption: read with short.mp4, not an input of its own")
    _mpg(raw / "old.mpg")
    os.symlink(raw / "moved_away.mp4", raw / "gone.mp4")
    os.symlink(raw / "moved_away.dat", raw / "gone.dat")
    (raw / "notes.dat").write_text("not a video")
    out = tmp_path / "out"
    assert main(prep_overrides(raw, out)) == 0
    printed = capsys.readouterr().out
    rows = {os.path.basename(r["source"]): r for r in pq.read_table(out / "ledger.parquet").to_pylist()}
    assert set(rows) == {"short.mp4", "old.mpg", "gone.mp4", "gone.dat", "notes.dat"}
    assert all(r["reason"] and r["message"] for r in rows.values())
    assert (rows["old.mpg"]["kind"], rows["old.mpg"]["stage"]) == ("video", "probe")  # probed, like any video
    assert (rows["gone.mp4"]["kind"], rows["gone.mp4"]["status"], rows["gone.mp4"]["reason"]) == (
        "video",
        "error",
        "unreadable",
    )
    assert (rows["notes.dat"]["kind"], rows["notes.dat"]["reason"]) == ("file", "unsupported_file")
    assert (rows["gone.dat"]["reason"], rows["gone.dat"]["message"]) == (
        "unreadable",
        f"broken symbolic link to {raw / 'moved_away.dat'}",
    )
    # No clip was kept: the summary says so instead of naming a shards folder that does not exist.
    assert "shards: none (no clip was kept" in printed and not (out / "shards").exists()
    assert "other input files, not processed: 2" in (out / "report.md").read_text()


def test_all_missing_weight_files_are_named_at_once_before_anything_is_written(tmp_path, monkeypatch, capsys):
    for name in ("TALKDIT_SYNCNET", "TALKDIT_HYPERIQA", "TALKDIT_WHISPER_PATH"):
        monkeypatch.delenv(name, raising=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_mp4(raw / "a.mp4", np.zeros((9, 64, 64, 3), np.uint8), 25.0)
    out = tmp_path / "out"
    assert main([f"input_dir={raw}", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 weight files are missing" in err
    for expected in (
        "TALKDIT_SYNCNET",
        "syncnet_v2.model",
        "sync.enabled=false",
        "TALKDIT_HYPERIQA",
        "koniq_pretrained.pkl",
        "quality.enabled=false",
        "TALKDIT_WHISPER_PATH",
        "https://huggingface.co/openai/whisper-small",
        "audio=tiny",
    ):
        assert expected in err, expected
    assert not out.exists()


@pytest.mark.slow
def test_the_ledger_records_what_the_face_size_rule_checked(small_corpus, tmp_path):
    out = tmp_path / "out"
    run(load_config(prep_overrides(small_corpus, out, "faces.min_face_px=1000")))
    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    clips = [r for r in rows if r["kind"] == "clip"]
    assert clips and all(r["reason"] == "face_too_small" for r in clips)
    for r in clips:
        # The rule compares the face the clip's segment reached by the clip's end with the threshold; both are
        # in the row, so a reader sees why a clip passed or failed.
        assert r["face_min_side_px"] <= r["segment_face_px"] < 1000
        assert f"{r['segment_face_px']:.0f} px < 1000.0 px" in r["message"]
        assert json.loads(r["thresholds"])["faces"]["min_face_px"] == 1000.0
        assert r["face_max_jump"] is not None and r["face_max_second_ratio"] is not None


def _table(rows):
    base = {"stages_ran": ["probe"], "thresholds": json.dumps({"probe": {"min_fps": 24}, "sync": {"x": 1}})}
    return rows_to_table([{**base, **r} for r in rows])


def test_the_report_lists_only_thresholds_of_stages_that_ran_and_has_no_empty_panel():
    table = _table(
        [
            {"kind": "video", "status": "rejected", "reason": "too_few_frames", "duration_s": 1.0},
            {"kind": "video", "status": "rejected", "reason": "too_few_frames", "duration_s": 2.0},
            {"kind": "video", "status": "rejected", "reason": "fps_out_of_range", "duration_s": 2.0},
        ]
    )
    summary = summarize(table)
    assert summary["thresholds"] == {"probe": {"min_fps": 24}}  # SyncNet never ran: its threshold is not shown
    assert '"sync"' not in render_markdown(summary)
    fig = chart_figure(summary)
    (ax,) = fig.axes  # videos were rejected; no clip exists, so there is no clip panel
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert [label.get_text() for label in ax.get_yticklabels()] == ["fps_out_of_range", "too_few_frames"]


def test_a_report_with_nothing_rejected_shows_the_counts():
    summary = summarize(_table([{"kind": "video", "status": "kept", "reason": "", "duration_s": 5.0}]))
    (ax,) = chart_figure(summary).axes
    assert ax.get_title() == "nothing rejected: counts by status" and len(ax.patches) == 1
    assert summarize(pa.Table.from_pylist([], schema=_table([]).schema))["video"]["total"] == 0
