"""Segments from per-frame analysis and clip tiling with timestamp resampling."""

import numpy as np
import pytest

from data_prep.config import ClipConfig, FaceConfig
from data_prep.segments import (
    FACE_TOO_SMALL,
    MULTIPLE_FACES,
    NO_FACE,
    SEGMENT_TOO_SHORT,
    FaceTrack,
    Segment,
    clip_face_px,
    find_segments,
    tile_clips,
)

CFG = FaceConfig(min_face_px=100, max_jump=0.15, max_missing_frames=8, min_segment_s=2.0, max_second_face_ratio=0.25)


def track(n, box=(100, 100, 300, 300)):
    boxes = np.tile(np.asarray(box, np.float32), (n, 1))
    return FaceTrack(boxes, boxes.copy(), np.zeros(n))


def times(n, fps=25.0):
    return np.arange(n) / fps


def test_one_clean_run_is_one_segment():
    segs, _, reasons = find_segments(times(100), set(), track(100), CFG, 100)
    assert [(s.start, s.end) for s in segs] == [(0, 100)]
    assert not any(reasons)


def test_scene_cut_and_jump_split_segments():
    tr = track(200)
    tr.boxes[120:] += 200  # the face jumps by a box size at frame 120
    segs, _, _ = find_segments(times(200), {60}, tr, CFG, 200)
    assert [(s.start, s.end) for s in segs] == [(0, 60), (60, 120), (120, 200)]


def test_short_gaps_are_bridged_long_gaps_split():
    tr = track(200)
    tr.boxes[50:56] = np.nan  # 6 missing frames: bridged, interpolated
    tr.boxes[120:140] = np.nan  # 20 missing: splits
    segs, bridged, reasons = find_segments(times(200), set(), tr, CFG, 200)
    assert [(s.start, s.end) for s in segs] == [(0, 120), (140, 200)]
    assert np.isfinite(bridged.boxes[50:56]).all()
    assert set(reasons[120:140]) == {NO_FACE}


def test_failures_are_named_and_short_segments_dropped():
    tr = track(150)
    tr.second_ratio[10:20] = 0.8
    segs, _, reasons = find_segments(times(150), set(), tr, CFG, 150)
    assert set(reasons[10:20]) == {MULTIPLE_FACES}
    assert set(reasons[0:10]) == {SEGMENT_TOO_SHORT}  # 10 frames = 0.4 s < 2 s
    assert [(s.start, s.end) for s in segs] == [(20, 150)]


def test_a_segment_whose_face_never_reaches_the_size_is_marked_and_clips_see_the_face_so_far():
    tr = track(200, box=(0, 0, 90, 90))
    tr.boxes[100:] += 500  # a cut-like jump: two segments of 4 s
    tr.boxes[150] = (500, 500, 600, 620)  # the second reaches 100 px once
    tr.boxes[149] = tr.boxes[151] = (505, 505, 598, 598)
    segs, bridged, reasons = find_segments(times(200), set(), tr, CFG, 200)
    assert set(reasons[:100]) == {FACE_TOO_SMALL} and not any(reasons[100:])
    assert [(s.start, s.end, s.face_px) for s in segs] == [(0, 100, 90.0), (100, 200, 100.0)]
    # A clip is judged on the face its segment reached by the clip's last frame.
    assert clip_face_px(bridged, segs[1], np.arange(100, 140)) == 90.0
    assert clip_face_px(bridged, segs[1], np.arange(120, 160)) == 100.0


def test_open_segment_at_the_frontier_is_kept_for_now():
    segs, _, _ = find_segments(times(30), set(), track(30), CFG, final=25)
    assert [(s.start, s.end) for s in segs] == [(0, 30)]


@pytest.mark.parametrize("src_fps", [24.0, 25.0, 29.97, 30.0, 50.0, 60.0])
def test_clips_resample_by_timestamp(src_fps):
    n = int(12 * src_fps)
    t = times(n, src_fps)
    clips = tile_clips(t, Segment(0, n), ClipConfig(num_frames=121, fps=25.0, stride_frames=121))
    assert len(clips) == 2  # 2 x 4.84 s fit in 12 s
    for k, idx in enumerate(clips):
        assert idx.shape == (121,)
        target = (k * 121 + np.arange(121)) / 25.0
        # Each chosen source frame is the nearest in time to the 25 fps target.
        assert np.all(np.abs(t[idx] - target) <= 0.5 / src_fps + 1e-9)
        assert np.all(np.diff(idx) >= 0)


def test_clips_keep_source_rate_when_fps_is_null():
    clips = tile_clips(times(300), Segment(10, 300), ClipConfig(num_frames=121, fps=None, stride_frames=121))
    assert [int(c[0]) for c in clips] == [10, 131]
    assert all(np.array_equal(c, np.arange(c[0], c[0] + 121)) for c in clips)
