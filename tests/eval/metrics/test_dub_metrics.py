"""Dub metrics against ground truth: region error, mouth opening from the closed-mouth render, silence."""

import numpy as np
import pytest

from data_prep.synthetic.clips import plan_clip, render_clip
from eval.metrics.dub import (
    box_masks,
    closed_in_silence,
    mouth_opening_change,
    opening_calibration,
    pearson,
    region_mse,
    silent_frames,
)


def test_box_masks_union_and_clipping():
    boxes = np.array([[[1.2, 2.0, 3.0, 4.5]], [[10.0, 10.0, 40.0, 12.0]]])  # two sets, one frame
    m = box_masks(boxes, 16, 12)
    assert m.shape == (1, 16, 12)
    assert m[0, 2:5, 1:3].all() and m[0, 10:12, 10:12].all()  # floor/ceil, clipped to the frame
    assert m.sum() == 3 * 2 + 2 * 2
    nan = box_masks(np.full((2, 4), np.nan), 8, 8)
    assert not nan.any()


def test_region_mse_only_counts_the_masked_pixels():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[:, 0, 0] = 10  # inside
    b[:, 3, 3] = 200  # outside
    masks = np.zeros((2, 4, 4), bool)
    masks[:, :2, :2] = True
    assert region_mse(a, b, masks) == pytest.approx(100.0 / 4)
    with pytest.raises(ValueError):
        region_mse(a, b, np.zeros_like(masks))


def test_mouth_opening_follows_the_driving_speech_on_ground_truth():
    plan = plan_clip(40, fps=25.0, num_frames=50, width=128, height=128, zoom=1.5)
    drive = plan_clip(41, fps=25.0, num_frames=50, width=128, height=128, zoom=1.5)
    truth = render_clip(plan, mouth_open=drive.mouth_open)
    closed = render_clip(plan, mouth_open=np.zeros(50))
    opened = render_clip(plan, mouth_open=np.ones(50))
    masks = box_masks(opened.lower_face_boxes, 128, 128)
    measured = mouth_opening_change(truth.frames, closed.frames, masks)
    assert pearson(measured, drive.mouth_open) > 0.9
    assert np.all(measured[drive.mouth_open == 0] == 0)  # a closed mouth is the closed render exactly
    # The source's own mouth does not follow the driving speech.
    source = render_clip(plan)
    assert abs(pearson(mouth_opening_change(source.frames, closed.frames, masks), drive.mouth_open)) < 0.5
    a, b = opening_calibration(measured, drive.mouth_open)
    silent = drive.mouth_open == 0
    assert closed_in_silence(measured, silent, (a, b)) == 1.0
    assert closed_in_silence(measured, np.zeros(50, bool), (a, b)) is None


def test_silent_frames_from_audio_level():
    rate, fps = 16000, 25.0
    audio = np.zeros(rate, np.float32)
    audio[: rate // 2] = 0.3 * np.sin(np.arange(rate // 2) * 0.1)
    audio += 1e-4 * np.random.default_rng(0).standard_normal(rate).astype(np.float32)
    silent = silent_frames(audio, rate, fps, 25)
    assert not silent[:12].any() and silent[13:].all()


def test_pearson_needs_variation():
    assert pearson(np.ones(5), np.arange(5)) is None
    assert pearson(np.array([1.0, np.nan, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(1.0)
