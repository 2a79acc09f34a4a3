"""Seconds, video frames and latent frames of an edit (:mod:`eval.sampler.edit_timeline`) at 25 and 30 fps."""

import pytest
import torch

from eval.sampler.edit_timeline import (
    audio_duration_s,
    audio_samples,
    duration_to_latent_frames,
    latent_frame_spans_s,
    latent_span,
    latent_to_video_frames,
    seconds_to_latent_boundary,
    seconds_to_video_frame,
    spread_positions,
    video_frame_to_latent,
)
from eval.sampler.editing import add_frames
from tests.eval.edit_source import source
from trainer.model.masks import latent_frame_groups

# ---------------------------------------------------------------------------------------- retime spreading


def test_spread_positions_even_and_exact():
    for length in range(1, 40):
        for count in range(0, length + 1):
            pos = spread_positions(count, length)
            assert len(pos) == count == len(set(pos))
            assert all(0 <= p < length for p in pos)
            gaps = [b - a for a, b in zip(pos, pos[1:])]
            if gaps:
                assert max(gaps) - min(gaps) <= 1
    assert spread_positions(2, 10) == [2, 7]
    assert spread_positions(3, 9) == [1, 4, 7]
    with pytest.raises(ValueError):
        spread_positions(4, 3)


# ------------------------------------------------------------------------------------------ seconds → latent


def test_video_frame_to_latent_matches_latent_frame_groups():
    for n, group in enumerate(latent_frame_groups(8 * 20 + 1)):
        for f in group:
            assert video_frame_to_latent(f) == n


@pytest.mark.parametrize(
    ("fps", "t", "frame", "latent"),
    [
        (25, 0.0, 0, 0),
        (25, 0.04, 1, 1),  # first frame of latent 1
        (25, 0.32, 8, 1),  # last frame of latent 1: boundary snaps back to its start
        (25, 0.36, 9, 2),
        (25, 1.0, 25, 4),  # latent 4 holds video frames 25..32
        (25, 0.98, 25, 4),  # 24.5 rounds half up
        (30, 1.0, 30, 4),
        (30, 0.3, 9, 2),  # 8.999999999999998 must not fall to frame 8
        (30, 2.0, 60, 8),
        (30, 2.1, 63, 8),
    ],
)
def test_seconds_to_latent_boundary(fps, t, frame, latent):
    assert seconds_to_video_frame(t, fps) == frame
    assert seconds_to_latent_boundary(t, fps) == latent


def test_durations_and_spans_at_25_and_30_fps():
    assert duration_to_latent_frames(1.0, 25) == 3  # 3.125
    assert duration_to_latent_frames(1.0, 30) == 4  # 3.75
    assert duration_to_latent_frames(0.9, 25) == 3  # 2.8125, the "+0.9 s" of Fig. 5
    assert duration_to_latent_frames(0.16, 25) == 1  # 0.5 rounds up
    assert duration_to_latent_frames(0.15, 25) == 0
    assert latent_span(1.0, 2.0, 25) == (4, 7)  # frames 25..49 → latents 4,5,6
    assert latent_span(1.0, 2.0, 30) == (4, 8)  # frames 30..59 → boundaries 4 and 8
    assert latent_span(1.0, 2.0, 25, cover=True) == (4, 8)  # last frame 49 is the first of latent 7
    assert latent_span(1.0, 1.2, 30, cover=True) == (4, 6)  # frames 30..35 touch latents 4 (25..32) and 5
    assert latent_span(1.0, 1.2, 30) == (4, 5)  # snapped: ⌈30/8⌉ = 4, ⌈36/8⌉ = 5
    assert latent_span(1.0, 1.1, 25) == (4, 4)  # too short for a timeline edit


def test_video_and_audio_helpers():
    assert latent_to_video_frames(1) == 1
    assert latent_to_video_frames(17) == 129
    assert audio_duration_s(4, 25) == pytest.approx(25 / 25)
    assert audio_samples(26, 25, 16000) == 201 * 640
    assert audio_samples(2, 30, 16000) == 4800  # 9 frames / 30 fps = 0.3 s
    spans = latent_frame_spans_s(3, 25)
    expected = torch.tensor([[0, 1], [1, 9], [9, 17]], dtype=torch.float64) / 25
    torch.testing.assert_close(spans, expected)
    lat, face = source()
    seq = add_frames(lat, 2, 5, face)
    assert audio_duration_s(seq.num_frames, 25) == pytest.approx(seq.video_frames / 25)
