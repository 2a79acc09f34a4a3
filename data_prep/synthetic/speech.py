"""Speech-like audio from a source-filter model, with the mouth-opening track that goes with it.

The synthesiser plans an utterance as phrases of words of syllables (onset consonant, vowel nucleus,
optional coda; :mod:`data_prep.synthetic.speech_plan`), then renders it here the way a formant synthesiser
does: a glottal pulse train with a wandering, jittered F0 and shimmer, filtered by time-varying vowel
formants, plus noise sources shaped as fricatives, plosive bursts and aspiration. The same plan drives a
mouth-opening track, so a face rendered from it moves its lips with the sound.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_prep.synthetic.speech_plan import UtterancePlan, plan_utterance

# Bandwidths (Hz) of F1..F4; F4 is fixed and only shapes the upper spectrum.
_BANDWIDTHS = np.array([80.0, 110.0, 160.0, 250.0])
_F4_HZ = 3500.0

# STFT used to apply the time-varying filters: 32 ms analysis window at 16 kHz, zero-padded to twice its
# length so a zero-phase filter of up to +-16 ms acts as a linear (not circular) convolution.
_WINDOW_S = 0.032
_HOP_S = 0.008


@dataclasses.dataclass(frozen=True, eq=False)
class SpeechTrack:
    """A synthetic utterance and the articulation that produced it.

    Attributes:
        audio: float32 [S] mono waveform in [-1, 1], S = round(duration_s * sample_rate).
        sample_rate: samples per second of ``audio``.
        syllables: (start_s, end_s) of every syllable, onset consonant to coda, in seconds.
        nuclei: float64 [K, 3] vowel nuclei, one row per syllable: start_s, end_s, peak openness in [0, 1].
        control_times_s: float64 [C] times (seconds) of the articulation control track.
        control_openness: float64 [C] mouth opening in [0, 1] at ``control_times_s``.
    """

    audio: np.ndarray
    sample_rate: int
    syllables: list[tuple[float, float]]
    nuclei: np.ndarray
    control_times_s: np.ndarray
    control_openness: np.ndarray

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return self.audio.shape[0] / self.sample_rate

    def mouth_openness(self, times_s: np.ndarray | float) -> np.ndarray:
        """Mouth opening at arbitrary times.

        The lips open during each vowel nucleus (wider for open vowels such as /a/ than for /i/ or /u/),
        close on labial consonants, and are closed between syllables and in pauses.

        Args:
            times_s: float array of any shape, times in seconds (clamped to the track's extent).

        Returns:
            float64 array of the same shape as ``times_s`` with values in [0, 1]; 0 = lips closed.
        """
        times = np.asarray(times_s, dtype=np.float64)
        return np.clip(np.interp(times, self.control_times_s, self.control_openness), 0.0, 1.0)


def synthesize_speech(duration_s: float, sample_rate: int = 16000, seed: int = 0) -> SpeechTrack:
    """Synthesise a speech-like utterance.

    Args:
        duration_s: length of the track in seconds (> 0).
        sample_rate: output sample rate in Hz (>= 8000).
        seed: seed of the utterance; the same seed gives a bit-identical track.

    Returns:
        The waveform (float32 [round(duration_s * sample_rate)], peak 0.9), its syllable timing and
        mouth-opening track.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")
    rng = np.random.default_rng(seed)
    num_samples = round(duration_s * sample_rate)
    hop = max(1, round(_HOP_S * sample_rate))
    num_ctl = num_samples // hop + 2
    ctl_times = np.arange(num_ctl) * (hop / sample_rate)

    # Speaker: base pitch and vocal-tract length (formant scale) vary together, as they do between
    # speakers; talking speed varies independently.
    voice_height = rng.uniform(0.0, 1.0)
    f0_base = 95.0 + 95.0 * voice_height + rng.uniform(-8.0, 8.0)
    formant_scale = 1.0 + 0.17 * voice_height
    tempo = rng.uniform(0.85, 1.15)

    plan, syllables, nuclei = plan_utterance(rng, duration_s, ctl_times, tempo)

    voice = _smooth(plan.voice, hop, sample_rate, 0.018)
    noise = _smooth(plan.noise, hop, sample_rate, 0.008)
    openness = np.clip(_smooth(plan.openness, hop, sample_rate, 0.045), 0.0, 1.0)
    formants = np.stack([_smooth(plan.formants[:, k], hop, sample_rate, 0.035) for k in range(3)], 1)
    formants *= formant_scale
    noise_fc = _smooth(plan.noise_fc, hop, sample_rate, 0.012) * np.sqrt(formant_scale)
    noise_bw = _smooth(plan.noise_bw, hop, sample_rate, 0.012)

    # The louder part of a syllable is where the mouth is open: vowel amplitude follows openness.
    voice_gain = voice * (0.3 + 0.7 * openness)

    f0 = _f0_contour(rng, plan, ctl_times, f0_base, hop, sample_rate)
    glottal = _glottal_source(rng, f0, ctl_times, num_samples, sample_rate)
    white = rng.standard_normal(num_samples)
    sample_times = np.arange(num_samples) / sample_rate

    voiced = glottal * np.interp(sample_times, ctl_times, voice_gain)
    noisy = white * np.interp(sample_times, ctl_times, noise)
    voiced_env, noise_env = _spectral_envelopes(formants, noise_fc, noise_bw, sample_rate)
    audio = _stft_filter(voiced, voiced_env, hop, sample_rate) + _stft_filter(noisy, noise_env, hop, sample_rate)

    peak = float(np.max(np.abs(audio)))
    if peak > 0:
        audio *= 0.9 / peak
    # Room noise floor, ~60 dB below the peak, so pauses are quiet rather than digitally silent.
    audio += 1e-3 * rng.standard_normal(num_samples)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)

    return SpeechTrack(
        audio=audio,
        sample_rate=sample_rate,
        syllables=syllables,
        nuclei=nuclei,
        control_times_s=ctl_times,
        control_openness=openness,
    )


def _smooth(track: np.ndarray, hop: int, sample_rate: int, width_s: float) -> np.ndarray:
    """Hann-window moving average of a control track; stands in for articulator inertia."""
    taps = max(1, int(round(width_s * sample_rate / hop)))
    if taps <= 1:
        return track.astype(np.float64)
    kernel = np.hanning(taps + 2)[1:-1]
    kernel /= kernel.sum()
    padded = np.pad(track.astype(np.float64), (taps, taps), mode="edge")
    return np.convolve(padded, kernel, mode="same")[taps:-taps]


def _f0_contour(
    rng: np.random.Generator, plan: UtterancePlan, ctl_times: np.ndarray, f0_base: float, hop: int, sample_rate: int
) -> np.ndarray:
    """F0 in Hz on the control grid: declination per phrase, pitch accents, slow wander, 75..260 Hz."""
    declination = np.where(plan.phrase_pos >= 0, 1.08 - 0.2 * np.clip(plan.phrase_pos, 0, 1), 0.95)
    declination = _smooth(declination, hop, sample_rate, 0.12)
    accent = 1.0 + _smooth(plan.accent, hop, sample_rate, 0.09)
    freqs = rng.uniform(0.2, 1.5, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    wander = 1.0 + 0.035 * np.sin(2 * np.pi * freqs[:, None] * ctl_times[None, :] + phases[:, None]).sum(0)
    return np.clip(f0_base * declination * accent * wander, 75.0, 260.0)


def _glottal_source(
    rng: np.random.Generator, f0_ctl: np.ndarray, ctl_times: np.ndarray, num_samples: int, sample_rate: int
) -> np.ndarray:
    """Radiated glottal flow derivative (Rosenberg pulses) with jitter, shimmer and breath noise.

    Returns:
        float64 [num_samples], roughly unit RMS while voiced.
    """
    sample_times = np.arange(num_samples) / sample_rate
    f0 = np.interp(sample_times, ctl_times, f0_ctl)
    # Jitter: ~1% period perturbation, held over 5 ms blocks so it acts cycle by cycle.
    block = max(1, int(0.005 * sample_rate))
    jitter = 1.0 + 0.01 * rng.standard_normal(num_samples // block + 1)
    f0 = f0 * np.repeat(jitter, block)[:num_samples]
    phase = np.cumsum(f0 / sample_rate)
    cycle = phase.astype(np.int64)
    frac = phase - cycle
    # Rosenberg pulse: opening over 40% of the period, closing over 16%, closed for the rest.
    t_open, t_close = 0.4, 0.16
    flow = np.where(
        frac < t_open,
        0.5 * (1.0 - np.cos(np.pi * frac / t_open)),
        np.where(frac < t_open + t_close, np.cos(0.5 * np.pi * (frac - t_open) / t_close), 0.0),
    )
    derivative = np.diff(flow, prepend=0.0) * (sample_rate / 100.0)
    shimmer = 1.0 + 0.06 * rng.standard_normal(int(cycle[-1]) + 2)
    source = derivative * shimmer[cycle]
    # Breathiness: turbulence while the glottis is open.
    source += 0.08 * rng.standard_normal(num_samples) * (frac < t_open + t_close)
    rms = np.sqrt(np.mean(source**2)) + 1e-12
    return source / rms


def _resonance(freqs: np.ndarray, centre: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """Magnitude response of a two-pole resonator, unity at DC (as in a cascade formant synthesiser)."""
    half_bw = 0.5 * bandwidth
    numerator = centre**2 + half_bw**2
    return numerator / np.sqrt((half_bw**2 + (freqs - centre) ** 2) * (half_bw**2 + (freqs + centre) ** 2))


def _spectral_envelopes(
    formants: np.ndarray, noise_fc: np.ndarray, noise_bw: np.ndarray, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame magnitude responses of the vocal tract (voiced path) and of the noise path.

    Args:
        formants: float [C, 3] F1..F3 in Hz.
        noise_fc: float [C] noise band centre in Hz (0 = aspiration through the formants).
        noise_bw: float [C] noise bandwidth in Hz.
        sample_rate: Hz.

    Returns:
        (voiced [C, B], noise [C, B]) float64 magnitude responses on the rfft bins of the padded frame.
    """
    n_fft = 2 * _next_pow2(round(_WINDOW_S * sample_rate))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)[None, :]

    def cascade(f123: np.ndarray) -> np.ndarray:
        response = np.ones((f123.shape[0], freqs.shape[1]))
        for k in range(3):
            response *= _resonance(freqs, f123[:, k : k + 1], _BANDWIDTHS[k])
        response *= _resonance(freqs, np.array([[_F4_HZ]]), _BANDWIDTHS[3])
        # Higher-pole correction: the resonances above F4 lift the upper spectrum, which a cascade of four
        # would otherwise let fall far too steeply; the roll-off above 5 kHz is the voice's own.
        return response * (1.0 + (freqs / 2200.0) ** 2) / (1.0 + (freqs / 5000.0) ** 6)

    # No per-frame normalisation: a cascade with unity gain at DC makes open vowels (high F1) louder than
    # close ones, as in real speech. A neutral vowel sets the overall scale.
    neutral = cascade(np.array([[500.0, 1500.0, 2500.0]]))
    tract = cascade(formants) / np.sqrt(np.mean(neutral**2))

    bw = np.maximum(noise_bw, 200.0)[:, None]
    band = np.exp(-0.5 * ((freqs - noise_fc[:, None]) / (0.5 * bw)) ** 2)
    band /= np.sqrt(np.mean(band**2, axis=1, keepdims=True)) + 1e-12
    aspiration = (noise_fc < 100.0)[:, None]
    noise = np.where(aspiration, tract, band)
    return tract, noise


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def _stft_filter(signal: np.ndarray, envelopes: np.ndarray, hop: int, sample_rate: int) -> np.ndarray:
    """Filter ``signal`` with a zero-phase response that changes every hop.

    Args:
        signal: float [S] input.
        envelopes: float [C, n_fft // 2 + 1] magnitude response for the frame centred at sample c * hop.
        hop: samples between frames.
        sample_rate: Hz.

    Returns:
        float64 [S] filtered signal.
    """
    num_samples = signal.shape[0]
    win_len = _next_pow2(round(_WINDOW_S * sample_rate))
    n_fft = 2 * win_len
    half = win_len // 2
    num_frames = envelopes.shape[0]
    # Frame c covers samples [c*hop - half, c*hop + half).
    total = (num_frames - 1) * hop + win_len
    padded = np.zeros(total)
    padded[half : half + num_samples] = signal[: total - half]
    frames = np.lib.stride_tricks.sliding_window_view(padded, win_len)[::hop][:num_frames]
    window = np.hanning(win_len + 1)[:-1]
    spectrum = np.fft.rfft(frames * window, n=n_fft, axis=1) * envelopes
    # Zero-phase output spans [-win_len/2, ...) around the frame; roll so it starts at index 0.
    out_frames = np.roll(np.fft.irfft(spectrum, n=n_fft, axis=1), half, axis=1)
    # Overlap-add: frame c lands at (c*hop - half) - half in padded-signal coordinates.
    out = np.zeros((num_frames - 1) * hop + n_fft)
    if n_fft % hop == 0:
        # Each frame's output splits into n_fft / hop blocks landing on consecutive hop-sized blocks of out.
        blocks = out.reshape(-1, hop)
        per_frame = out_frames.reshape(num_frames, n_fft // hop, hop)
        for k in range(n_fft // hop):
            blocks[k : k + num_frames] += per_frame[:, k]
    else:
        for c in range(num_frames):
            out[c * hop : c * hop + n_fft] += out_frames[c]
    # Hann analysis windows at hop = win_len / 4 sum to 2; general hops sum to win_len / (2 * hop).
    out /= win_len / (2.0 * hop)
    # out index 0 corresponds to padded index -half, i.e. signal sample -2*half.
    start = 2 * half
    result = out[start : start + num_samples]
    if result.shape[0] < num_samples:
        result = np.pad(result, (0, num_samples - result.shape[0]))
    return result
