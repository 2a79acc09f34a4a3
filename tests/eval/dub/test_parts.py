"""The dub's parts without a model: timeline, crop geometry and colour, paste masks, random-order frame reading."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from eval.dub.geometry import Window, cut_crop, paste_crop, rgb_to_yuv444, stored_box, yuv444_to_rgb
from eval.dub.timeline import plan_timeline
from eval.dub.track import FaceTrack, check_faces
from eval.dub.video import DubInputError, FrameIndex, FrameReader, probe_video, writable_copy, yuv_planes
from eval.sampler.paste import frame_mask, pixel_mask


def test_pingpong_plays_the_video_back_and_forth_until_the_speech_ends():
    times = np.arange(5) / 25.0
    line = plan_timeline(times, 25.0, audio_s=0.48, loop="pingpong")
    assert line.num_output == 12 and line.looped and line.audio_s == 0.48
    assert line.num_model_frames == 17  # 8k + 1 >= 12; the extra frames are generated and dropped
    assert list(line.order[:12]) == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]


def test_loop_none_cuts_to_the_shorter_and_follows_timestamps():
    # A source that dropped the frame at 0.08 s: the output at 25 fps takes the frame nearest each tick (the
    # project's frame-rate rule; a tie goes to the earlier frame), so the frame before the gap shows twice.
    times = np.array([0.0, 0.04, 0.12, 0.16, 0.2, 0.24])
    line = plan_timeline(times, 25.0, audio_s=2.0, loop="none")
    assert not line.looped and line.num_output == 7 and line.audio_s == pytest.approx(7 / 25)
    assert list(line.order) == [0, 1, 1, 2, 3, 4, 5, 5, 5]  # padded to 9 = 8k + 1 with the last frame
    short = plan_timeline(np.arange(100) / 25.0, 25.0, audio_s=1.0, loop="none")
    assert short.num_output == 25 and not short.looped


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_stored_box_shows_the_upright_box(k):
    stored = np.arange(12 * 20).reshape(12, 20)
    upright = np.rot90(stored, k)
    box = (2, 4, 8, 10) if upright.shape[1] >= 8 else (2, 4, 6, 10)
    x0, y0, x1, y1 = box
    sx0, sy0, sx1, sy1 = stored_box(box, k, stored.shape)
    assert np.array_equal(upright[y0:y1, x0:x1], np.rot90(stored[sy0:sy1, sx0:sx1], k))


@pytest.mark.parametrize(("colorspace", "color_range"), [(1, 1), (5, 1), (1, 2), (9, 1)])
def test_rgb_yuv_round_trip_within_a_level(colorspace, color_range):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in rgb_to_yuv444(rgb, colorspace, color_range)]
    back = yuv444_to_rgb(*planes, colorspace, color_range)
    # 8-bit YUV (limited range above all) cannot hold every RGB triple: a few levels of rounding per channel.
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 3


def test_paste_writes_only_where_the_mask_is_nonzero_and_keeps_every_other_byte():
    rng = np.random.default_rng(1)
    planes = (rng.integers(0, 256, (64, 96), np.uint8), *(rng.integers(0, 256, (32, 48), np.uint8) for _ in "uv"))
    before = [p.copy() for p in planes]
    window = Window(x0=20, y0=-8, width=40, height=40)  # reaches past the top edge: edge-padded
    crop = cut_crop(planes, window, 0, (32, 32), 1, 1)
    assert crop.shape == (32, 32, 3)
    mask = np.zeros((32, 32), np.float32)
    paste_crop(planes, window, 0, np.zeros_like(crop), mask, 1, 1)
    assert all(np.array_equal(a, b) for a, b in zip(planes, before))
    mask[8:24, 8:24] = 1.0
    paste_crop(planes, window, 0, np.zeros_like(crop), mask, 1, 1)
    changed = planes[0] != before[0]
    rows, cols = np.nonzero(changed)
    assert changed.any() and rows.max() < 32 and cols.min() >= 20 and cols.max() < 60  # inside the window
    assert (planes[0][5:19, 33:47] == 16).all()  # black in limited range where the (resized) mask is 1


def test_frame_mask_is_the_generated_tokens_grown_and_feathered():
    tokens = np.zeros((4, 4), np.float32)
    tokens[2:, 1:3] = 1
    m = frame_mask(tokens, 32, feather_px=3.0)
    assert m.shape == (128, 128) and m.min() >= 0 and m.max() <= 1
    assert (m[70:120, 40:90] > 0.999).all()  # the generated tokens' core
    assert (m[:40] == 0).all() and (m[:, :12] == 0).all()  # far from them
    edge = m[64 - 12 : 64 + 2, 64]
    assert ((edge > 0) & (edge < 1)).any()  # a soft edge, not a step
    groups = pixel_mask(torch.from_numpy(np.stack([tokens, 1 - tokens])), 9, 32, 8, 3.0)
    assert np.array_equal(groups[0], m) and np.array_equal(groups[1], groups[8])


def test_check_faces_names_the_seconds_without_a_face(tmp_path):
    times = np.arange(50) / 25.0
    boxes = np.tile(np.array([[10, 10, 50, 50]], np.float32), (50, 1))
    boxes[5:45] = np.nan
    track = FaceTrack(FrameIndex([None] * 50, times, np.zeros(50, bool)), boxes, boxes.copy())
    with pytest.raises(DubInputError, match=r"video=v.mp4: no face found in 80% of the frames \(seconds 0.2-1.8\)"):
        check_faces(track, 0.5, 25.0, "v.mp4")
    check_faces(track, 0.2, 25.0, "v.mp4")


def test_frame_reader_serves_any_order_with_a_small_window(tmp_path):
    path = tmp_path / "numbered.mp4"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.options = {"g": "10", "crf": "0", "preset": "ultrafast"}  # a keyframe every 10 frames, lossless
        for i in range(40):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((32, 64, 3), 6 * i, np.uint8), format="rgb24")))
        c.mux(s.encode(None))
    info = probe_video(path)
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    index = FrameIndex(
        [f.pts for f in frames], np.array([float(f.time) for f in frames]), np.array([f.key_frame for f in frames])
    )
    order = [*range(0, 40), *range(38, -1, -1), 17, 3, 39]
    with FrameReader(info, index, cache_frames=4) as reader:
        for i in order:
            level = int(yuv_planes(reader.frame(i))[0].mean())
            want = int(yuv_planes(frames[i])[0].mean())
            assert level == want, (i, level, want)
            assert len(reader.window) <= 4
        assert reader.seeks > 5  # the backward run was served by seeking, not by holding the video


@pytest.mark.parametrize("fmt", ["yuv420p", "rgb24"])
def test_writable_copy_holds_the_frames_pixels_and_writing_it_leaves_the_frame_alone(fmt):
    rng = np.random.default_rng(0)
    source = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), np.uint8), format="rgb24")
    if fmt == "yuv420p":
        source = source.reformat(format="yuv420p")
    before = [p.copy() for p in yuv_planes(source)]
    copy, planes = writable_copy(source)
    assert copy.format.name == "yuv420p" and (copy.width, copy.height) == (64, 48)
    for got, want in zip(planes, before):
        np.testing.assert_array_equal(got, want)
    for plane in planes:
        plane[:] = 7
    assert all((p == 7).all() for p in yuv_planes(copy))
    for got, want in zip(yuv_planes(source), before):
        np.testing.assert_array_equal(got, want)  # the decoded frame is untouched
    views = yuv_planes(source, copy=False)
    np.testing.assert_array_equal(views[0], before[0])


def test_analysing_every_other_frame_counts_only_the_analysed_frames():
    times = np.arange(50) / 25.0
    boxes = np.tile(np.array([[10, 10, 50, 50]], np.float32), (50, 1))
    analysed = np.arange(50) % 2 == 0
    boxes[~analysed] = np.nan  # frames the analyser skipped: not counted as faceless
    track = FaceTrack(FrameIndex([None] * 50, times, np.zeros(50, bool)), boxes, boxes.copy(), analysed)
    check_faces(track, 1.0, 25.0, "v.mp4")
    boxes[10:40:2] = np.nan  # 15 of the 25 analysed frames without a face
    with pytest.raises(DubInputError, match=r"no face found in 60% of the frames \(seconds 0.4-1.6\)"):
        check_faces(FaceTrack(track.index, boxes, boxes.copy(), analysed), 0.5, 25.0, "v.mp4")
