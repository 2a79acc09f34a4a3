"""The one frame-rate rule (data_prep.frame_rate) and its users: data_prep's clips and eval's SyncNet view agree."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.config import ClipConfig
from data_prep.frame_rate import nearest_frames, rate_view, resample_indices, resampled_length
from data_prep.segments import Segment, tile_clips
from eval.metrics import sync


def test_nearest_frames_is_the_nearest_timestamp_on_variable_rate_sources():
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.01, 0.05, 400))  # variable frame durations
    ticks = rng.uniform(times[0] - 0.1, times[-1] + 0.1, 1000)
    got = nearest_frames(times, ticks)
    brute = np.abs(times[None, :] - ticks[:, None]).argmin(axis=1)  # argmin keeps the first (earlier) on ties
    np.testing.assert_array_equal(got, brute)


def test_ties_go_to_the_earlier_frame():
    # 50 → 25 fps: every tick falls exactly on a frame; 0.5-frame ticks are ties.
    times = np.arange(10) / 50.0
    np.testing.assert_array_equal(nearest_frames(times, np.arange(5) / 25.0), [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(nearest_frames(times, (np.arange(4) + 0.5) / 50.0), [0, 1, 2, 3])


def test_30_to_25_fps_and_lengths():
    idx = resample_indices(30, 30.0, 25.0)
    np.testing.assert_array_equal(
        idx, [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 28, 29]
    )
    assert resampled_length(121, 30.0, 25.0) == 101  # tick 100 (4.0 s) is frame 120 itself
    assert resampled_length(125, 25.0, 25.0) == 125 and resampled_length(0, 30.0, 25.0) == 0
    np.testing.assert_array_equal(resample_indices(7, 25.0, 25.0), np.arange(7))
    assert np.abs(idx / 30.0 - np.arange(25) / 25.0).max() <= 0.5 / 30 + 1e-12  # within half a source frame
    with pytest.raises(ValueError, match="frame rates must be > 0"):
        resample_indices(10, 0.0, 25.0)


@pytest.mark.parametrize("fps", [24.0, 30000 / 1001, 30.0, 50.0, 60.0])
@pytest.mark.parametrize("start", [0, 7])
def test_data_prep_clips_and_eval_sync_pick_the_same_source_frames(fps, start):
    """A clip cut by data_prep at 25 fps and eval's 25 fps view of the same span show the same source frames."""
    num_source = int(12 * fps)
    times = np.arange(num_source) / fps
    cfg = ClipConfig(num_frames=25, fps=25.0, stride_frames=25)
    clips = tile_clips(times, Segment(start, num_source), cfg)
    assert len(clips) >= 10
    prep = np.concatenate(clips)
    # eval resamples a generated video given as frames; here the "frames" are their own source indices.
    span = np.arange(start, num_source)
    view = sync.resample_frames(span, fps)
    np.testing.assert_array_equal(prep, view[: prep.size])
    if fps != 50.0:  # a rule that merely floors (what eval did before) disagrees on many frames
        floor = span[np.floor(np.arange(prep.size) * fps / 25.0 + 1e-9).astype(int)]
        assert np.mean(floor != prep) > 0.2


@pytest.mark.parametrize(("fps", "frames"), [(24.0, 97), (25.0, 121), (30.0, 121), (50.0, 121), (60.0, 121)])
def test_a_clips_25_fps_view_covers_its_span_on_its_timestamps(fps, frames):
    start = 7.3  # a clip deep in its source: the view starts at the clip's first frame, not at 0
    times = start + np.arange(frames) / fps
    view = rate_view(times, 25.0)
    assert view[0] == 0 and len(view) == resampled_length(frames, fps, 25.0)
    assert np.all(np.diff(view) >= 0) and view[-1] <= frames - 1
    ticks = start + np.arange(len(view)) / 25.0
    assert np.abs(times[view] - ticks).max() <= 0.5 / fps + 1e-9  # within half a source frame of each tick
    if fps == 25.0:
        assert np.array_equal(view, np.arange(frames))
