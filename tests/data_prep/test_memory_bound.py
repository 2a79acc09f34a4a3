"""Frames held in memory do not grow with a video's length: about one clip and a window, not the video."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

import data_prep.pipeline as pipeline
from data_prep.run import load_config, run
from data_prep.synthetic.corpus import generate_corpus
from tests.data_prep.conftest import prep_overrides


@pytest.mark.slow
def test_a_long_video_is_cut_with_a_bounded_frame_buffer(tmp_path, monkeypatch):
    generate_corpus(tmp_path / "raw", 1, seed=5, fps_choices=(25.0,), duration_s=12.0, width=128, height=128)
    most = {"frames": 0}
    add = pipeline.FrameBuffer.add

    def counting_add(self, index, rgb):
        add(self, index, rgb)
        most["frames"] = max(most["frames"], len(self))

    monkeypatch.setattr(pipeline.FrameBuffer, "add", counting_add)
    cfg = load_config(prep_overrides(tmp_path / "raw", tmp_path / "out", "filters=demo", "faces.min_face_px=32"))
    run(cfg)
    clips = [r for r in pq.read_table(tmp_path / "out" / "ledger.parquet").to_pylist() if r["kind"] == "clip"]
    assert sum(r["status"] == "kept" for r in clips) >= 8  # 25-frame clips all along the 12 s video
    fps = 25.0
    lag = max(cfg.scenes.min_scene_len, cfg.faces.max_missing_frames) + 2
    window = math.ceil(cfg.execution.window_s * fps) + 1
    references = math.ceil((2 * cfg.features.reference_window_s + 1) * cfg.features.reference_candidates_per_s) + 2
    bound = cfg.clips.num_frames + lag + window + references
    assert most["frames"] <= bound < 300  # the video has 300 frames
