"""Eq. 3: phase-shifted window sampling, checked against a direct computation."""

import math

import pytest
import torch

from trainer.model.audio_windows import sample_audio_windows


def direct_windows(features, length, fps, num_frames, window, rate, start=0):
    """Eq. 3 written out per frame and slot in plain Python."""
    out = torch.zeros(num_frames, window, *features.shape[1:], dtype=torch.float64)
    valid = torch.zeros(num_frames, window, dtype=torch.bool)
    for i in range(num_frames):
        for n in range(window):
            u = (i + start) * rate / fps + (n - (window - 1) / 2)
            if not (0 <= u <= length - 1):
                continue
            k = math.floor(u)
            a = u - k
            f0 = features[k].double()
            f1 = features[k + 1].double() if k + 1 < length else torch.zeros_like(f0)
            out[i, n] = (1 - a) * f0 + a * f1
            valid[i, n] = True
    return out, valid


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 30.0, 60.0])
@pytest.mark.parametrize("window", [8, 9])
def test_click_lands_in_the_right_slot(fps, window):
    # A click: one feature row at 1, the rest 0. For frame i, the slot holding the click is where
    # u_n is nearest to the click index, weighted 1 - |u_n - click|.
    rate, length, frames = 50.0, 200, 57
    click = 30
    feats = torch.zeros(1, length, 2, 3)
    feats[0, click] = 1.0
    win, valid = sample_audio_windows(feats, torch.tensor([length]), torch.tensor([fps]), frames, window, rate)
    assert win.shape == (1, frames, window, 2, 3)
    hits = 0
    for i in range(frames):
        centre = i * rate / fps
        for n in range(window):
            u = centre + n - (window - 1) / 2
            expected = max(0.0, 1.0 - abs(u - click))
            assert win[0, i, n, 0, 0].item() == pytest.approx(expected, abs=1e-6), (i, n)
            hits += expected > 0
    # The click is heard by the frames whose window spans it: |i·rate/fps - click| < W/2 + 1.
    heard_frames = {i for i in range(frames) if abs(i * rate / fps - click) < (window - 1) / 2 + 1}
    assert {i for i in range(frames) if win[0, i, :, 0, 0].abs().sum() > 0} == heard_frames
    assert hits > 0
    # Frame 0's left half-window precedes the audio: padded and masked, the rest valid.
    left = (window - 1) // 2 + (window % 2 == 0)
    assert not valid[0, 0, :left].any() and valid[0, 0, left:].all()
    assert valid[0, frames // 2].all()


@pytest.mark.parametrize("fps", [24.0, 25.0, 30.0, 60.0])
def test_matches_direct_computation_with_padding_and_offsets(fps):
    torch.manual_seed(0)
    rate, frames, window = 50.0, 33, 9
    lengths = [40, 71]
    feats = torch.randn(2, 71, 3, 4)
    start = torch.tensor([0, 5])
    win, valid = sample_audio_windows(
        feats, torch.tensor(lengths), torch.tensor([fps, fps]), frames, window, rate, first_frame=start
    )
    for b in range(2):
        ref, ref_valid = direct_windows(feats[b], lengths[b], fps, frames, window, rate, int(start[b]))
        torch.testing.assert_close(win[b].double(), ref, atol=1e-5, rtol=0)
        assert torch.equal(valid[b], ref_valid)
    # Slots before the audio starts (frame 0, left half of the window) are padded and masked.
    assert not valid[0, 0, 0]
    assert torch.all(win[0, 0, 0] == 0)


def test_window_duration_is_fps_independent():
    # The same audio instant, reached at frame 24 at 24 fps and frame 60 at 60 fps, gets the same window.
    feats = torch.randn(1, 150, 2, 2)
    w24, _ = sample_audio_windows(feats, torch.tensor([150]), torch.tensor([24.0]), 25, 9, 50.0)
    w60, _ = sample_audio_windows(feats, torch.tensor([150]), torch.tensor([60.0]), 61, 9, 50.0)
    torch.testing.assert_close(w24[0, 24], w60[0, 60])


def test_rejects_bad_rank():
    with pytest.raises(ValueError, match=r"\[B, L, Bl, C\]"):
        sample_audio_windows(torch.zeros(10, 2, 3), torch.tensor([10]), torch.tensor([25.0]), 9, 5, 50.0)
