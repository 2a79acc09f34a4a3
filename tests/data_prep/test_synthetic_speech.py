"""The synthetic corpus's speech: a deterministic, speech-like track, and a mouth that moves with it."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.synthetic.clips import generate_clip
from data_prep.synthetic.speech import synthesize_speech

SR = 16000


# --- helpers -----------------------------------------------------------------------------------------
def _frame_rms(audio: np.ndarray, hop: int) -> np.ndarray:
    n = audio.shape[0] // hop
    return np.sqrt(np.mean(audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))


def _rms_at(audio: np.ndarray, times_s: np.ndarray, window_s: float) -> np.ndarray:
    """RMS of the audio in a window centred on each time."""
    half = max(1, int(round(window_s * SR / 2)))
    centres = np.round(times_s * SR).astype(int)
    power = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    lo = np.clip(centres - half, 0, audio.shape[0])
    hi = np.clip(centres + half, 0, audio.shape[0])
    return np.sqrt((power[hi] - power[lo]) / np.maximum(hi - lo, 1))


def _f0_track(audio: np.ndarray) -> np.ndarray:
    """Autocorrelation pitch (Hz) of the loud 40 ms frames."""
    frame, hop = 640, 320
    loud = 0.1 * _frame_rms(audio, hop).max()
    pitches = []
    for start in range(0, audio.shape[0] - frame, hop):
        w = audio[start : start + frame].astype(np.float64)
        if np.sqrt(np.mean(w**2)) < loud:
            continue
        w = w - w.mean()
        ac = np.correlate(w, w, "full")[frame - 1 :]
        lo, hi = SR // 300, SR // 70
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            pitches.append(SR / lag)
    return np.array(pitches)


# --- speech ------------------------------------------------------------------------------------------
def test_speech_track_format_and_determinism():
    a = synthesize_speech(3.3, sample_rate=SR, seed=5)
    b = synthesize_speech(3.3, sample_rate=SR, seed=5)
    c = synthesize_speech(3.3, sample_rate=SR, seed=6)
    assert a.audio.dtype == np.float32 and a.audio.ndim == 1
    assert a.audio.shape[0] == round(3.3 * SR)
    assert np.abs(a.audio).max() <= 1.0 and np.abs(a.audio).max() > 0.5
    assert np.array_equal(a.audio, b.audio) and a.syllables == b.syllables
    assert not np.array_equal(a.audio, c.audio)
    assert all(0.0 <= s < e <= 3.3 for s, e in a.syllables)


@pytest.mark.parametrize("seed", [0, 7, 12])
def test_speech_is_speech_like(seed):
    audio = synthesize_speech(8.0, sample_rate=SR, seed=seed).audio

    # Energy envelope (10 ms frames) is modulated at syllable rates: a large share of its modulation
    # spectrum lies in 2-8 Hz.
    env = _frame_rms(audio, SR // 100)
    spectrum = np.abs(np.fft.rfft((env - env.mean()) * np.hanning(env.shape[0]))) ** 2
    freqs = np.fft.rfftfreq(env.shape[0], 0.01)
    syllabic = spectrum[(freqs >= 2) & (freqs <= 8)].sum() / spectrum[(freqs >= 0.25) & (freqs <= 30)].sum()
    assert syllabic > 0.25

    # Pauses: quiet 20 ms frames (40 dB below the loudest), including a run of at least 200 ms.
    quiet = 20 * np.log10(_frame_rms(audio, SR // 50) / _frame_rms(audio, SR // 50).max() + 1e-12) < -40
    assert quiet.mean() > 0.05
    edges = np.diff(np.concatenate([[0], quiet.astype(int), [0]]))
    runs = (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)) * 0.02
    assert runs.max() >= 0.2

    # Spectrum: centroid in the range of voiced speech, and no single dominant frequency (not a tone).
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    fr = np.fft.rfftfreq(audio.shape[0], 1.0 / SR)
    centroid = (power * fr).sum() / power.sum()
    assert 300 < centroid < 3000
    assert power.max() / power.sum() < 0.05
    assert power[fr > 2000].sum() / power.sum() > 0.005  # consonant noise and upper formants exist

    # Voice pitch: a plausible, moving F0.
    f0 = _f0_track(audio)
    assert f0.shape[0] > 50
    assert 80 < np.median(f0) < 250
    assert np.percentile(f0, 90) / np.percentile(f0, 10) > 1.08


def test_mouth_openness_follows_syllables():
    track = synthesize_speech(6.0, sample_rate=SR, seed=3)
    times = np.linspace(0, 6.0, 3001)
    openness = track.mouth_openness(times)
    assert openness.min() >= 0.0 and openness.max() <= 1.0
    spans = np.array(track.syllables)
    far = np.all((times[:, None] < spans[None, :, 0] - 0.1) | (times[:, None] > spans[None, :, 1] + 0.1), axis=1)
    assert far.sum() > 100  # there are pauses
    assert openness[far].max() < 0.05
    mids = 0.5 * (track.nuclei[:, 0] + track.nuclei[:, 1])
    assert np.median(track.mouth_openness(mids)) > 0.2


@pytest.mark.parametrize("fps", [24.0, 25.0, 30.0, 60.0])
def test_mouth_opening_correlates_with_audio_energy(fps):
    clip = generate_clip(21, fps=fps, num_frames=int(round(6 * fps)), width=64, height=64)
    times = np.arange(clip.num_frames) / fps
    energy = _rms_at(clip.audio, times, 1.0 / fps)
    r = np.corrcoef(clip.mouth_open, energy)[0, 1]
    assert r > 0.5, f"Pearson r = {r:.3f} at {fps} fps"
    assert clip.audio.shape[0] == round(clip.num_frames / fps * SR)
