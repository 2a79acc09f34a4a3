"""Speech-like audio from a source-filter model, with the mouth-opening track that goes with it.

The synthesiser plans an utterance as phrases of words of syllables (onset consonant, vowel nucleus,
optional coda), then renders it the way a formant synthesiser does: a glottal pulse train with a
wandering, jittered F0 and shimmer, filtered by time-varying vowel formants, plus noise sources shaped
as fricatives, plosive bursts and aspiration. The same plan drives a mouth-opening track, so a face
rendered from it moves its lips with the sound.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# (F1, F2, F3) in Hz for an adult male vocal tract, and how far the mouth opens on the vowel (0..1).
# F1 rises with jaw opening, which is why openness follows F1.
_VOWELS = np.array(
    [
        # F1     F2      F3    openness
        [730.0, 1090.0, 2440.0, 1.00],  # a  (father)
        [660.0, 1720.0, 2410.0, 0.85],  # ae (cat)
        [640.0, 1190.0, 2390.0, 0.80],  # uh (cut)
        [570.0, 840.0, 2410.0, 0.75],  # aw (caught)
        [530.0, 1840.0, 2480.0, 0.65],  # eh (bet)
        [490.0, 1350.0, 1690.0, 0.50],  # er (bird)
        [440.0, 1020.0, 2240.0, 0.42],  # uu (book)
        [390.0, 1990.0, 2550.0, 0.40],  # ih (bit)
        [300.0, 870.0, 2240.0, 0.28],  # oo (boot)
        [270.0, 2290.0, 3010.0, 0.25],  # ee (beet)
    ]
)
# Open vowels are more frequent in running speech than the closed ones.
_VOWEL_WEIGHTS = np.array([1.6, 1.1, 1.5, 0.9, 1.3, 0.7, 0.6, 1.3, 0.7, 1.0])

_KIND_STOP, _KIND_FRICATIVE, _KIND_NASAL, _KIND_APPROXIMANT = range(4)

# Consonants: kind, voiced, labial (lips closed), noise centre (Hz), noise bandwidth (Hz),
# locus formants (F1, F2, F3) the vowel transitions start from.
_CONSONANTS = (
    # name  kind              voiced labial  fc      bw      locus
    ("p", _KIND_STOP, False, True, 900.0, 1400.0, (250.0, 800.0, 2200.0)),
    ("b", _KIND_STOP, True, True, 900.0, 1400.0, (250.0, 800.0, 2200.0)),
    ("t", _KIND_STOP, False, False, 4200.0, 2500.0, (300.0, 1800.0, 2700.0)),
    ("d", _KIND_STOP, True, False, 4000.0, 2500.0, (300.0, 1800.0, 2700.0)),
    ("k", _KIND_STOP, False, False, 2100.0, 1200.0, (300.0, 2000.0, 2500.0)),
    ("g", _KIND_STOP, True, False, 2100.0, 1200.0, (300.0, 2000.0, 2500.0)),
    ("s", _KIND_FRICATIVE, False, False, 6200.0, 2400.0, (300.0, 1700.0, 2700.0)),
    ("z", _KIND_FRICATIVE, True, False, 6000.0, 2400.0, (300.0, 1700.0, 2700.0)),
    ("sh", _KIND_FRICATIVE, False, False, 3600.0, 2200.0, (300.0, 1900.0, 2500.0)),
    ("f", _KIND_FRICATIVE, False, True, 4500.0, 6000.0, (300.0, 1000.0, 2300.0)),
    ("v", _KIND_FRICATIVE, True, True, 4500.0, 6000.0, (300.0, 1000.0, 2300.0)),
    ("h", _KIND_FRICATIVE, False, False, 0.0, 0.0, (500.0, 1500.0, 2500.0)),
    ("m", _KIND_NASAL, True, True, 0.0, 0.0, (260.0, 1000.0, 2200.0)),
    ("n", _KIND_NASAL, True, False, 0.0, 0.0, (260.0, 1500.0, 2500.0)),
    ("l", _KIND_APPROXIMANT, True, False, 0.0, 0.0, (360.0, 1300.0, 2700.0)),
    ("r", _KIND_APPROXIMANT, True, False, 0.0, 0.0, (420.0, 1300.0, 1600.0)),
    ("w", _KIND_APPROXIMANT, True, True, 0.0, 0.0, (300.0, 700.0, 2200.0)),
    ("y", _KIND_APPROXIMANT, True, False, 0.0, 0.0, (280.0, 2200.0, 2900.0)),
)
_ONSET_WEIGHTS = np.array([1.0, 1.0, 1.6, 1.2, 1.0, 0.6, 1.5, 0.6, 0.5, 0.7, 0.5, 0.6, 1.2, 1.4, 1.0, 0.9, 0.7, 0.3])
_CODA_NAMES = ("t", "d", "k", "s", "z", "n", "m", "l", "r")

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


@dataclasses.dataclass
class _Plan:
    """Control targets on the hop grid, filled in segment by segment before smoothing."""

    voice: np.ndarray  # voicing amplitude target
    noise: np.ndarray  # noise amplitude target (fricatives, bursts, aspiration)
    noise_fc: np.ndarray  # noise band centre, Hz; 0 = aspiration shaped by the formants
    noise_bw: np.ndarray  # noise bandwidth, Hz
    formants: np.ndarray  # [C, 3] F1..F3 targets, Hz
    openness: np.ndarray  # mouth opening target
    accent: np.ndarray  # F0 accent target (relative pitch raise)
    phrase_pos: np.ndarray  # position within the phrase in [0, 1], for declination; -1 in pauses


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

    plan, syllables, nuclei = _plan_utterance(rng, duration_s, ctl_times, tempo)

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


def _plan_utterance(
    rng: np.random.Generator, duration_s: float, ctl_times: np.ndarray, tempo: float
) -> tuple[_Plan, list[tuple[float, float]], np.ndarray]:
    """Lay out phrases, words and syllables and rasterise their targets onto the control grid."""
    num_ctl = ctl_times.shape[0]
    dt = ctl_times[1] - ctl_times[0]
    plan = _Plan(
        voice=np.zeros(num_ctl),
        noise=np.zeros(num_ctl),
        noise_fc=np.full(num_ctl, 3000.0),
        noise_bw=np.full(num_ctl, 2000.0),
        formants=np.tile(np.array([500.0, 1500.0, 2500.0]), (num_ctl, 1)),
        openness=np.zeros(num_ctl),
        accent=np.zeros(num_ctl),
        phrase_pos=np.full(num_ctl, -1.0),
    )

    def span(start: float, end: float) -> slice:
        return slice(max(0, int(round(start / dt))), max(0, min(num_ctl, int(round(end / dt)))))

    syllables: list[tuple[float, float]] = []
    nuclei: list[tuple[float, float, float]] = []
    vowel_p = _VOWEL_WEIGHTS / _VOWEL_WEIGHTS.sum()
    onset_p = _ONSET_WEIGHTS / _ONSET_WEIGHTS.sum()
    coda_idx = [i for i, c in enumerate(_CONSONANTS) if c[0] in _CODA_NAMES]

    t = min(rng.uniform(0.12, 0.45), 0.2 * duration_s)  # short tracks still get speech
    while t < duration_s - 0.15:
        phrase_start = t
        phrase_syllables: list[tuple[float, float]] = []
        for _word in range(int(rng.integers(2, 7))):
            num_syl = int(rng.choice([1, 1, 1, 2, 2, 3]))
            stressed = int(rng.integers(num_syl))
            for s in range(num_syl):
                if t >= duration_s - 0.1:
                    break
                syl_start = t
                vowel = _VOWELS[rng.choice(len(_VOWELS), p=vowel_p)]
                stress = 1.0 if s == stressed else rng.uniform(0.55, 0.8)
                if rng.uniform() < 0.75:
                    t = _place_consonant(
                        rng, plan, span, _CONSONANTS[rng.choice(len(_CONSONANTS), p=onset_p)], t, tempo, vowel
                    )
                nucleus_len = rng.uniform(0.07, 0.15) * (1.3 if s == stressed else 1.0) / tempo
                nucleus_end = t + nucleus_len
                sl = span(t, nucleus_end)
                # Loudness and jaw opening peak early in the vowel and sag towards its end.
                x = np.linspace(0.0, 1.0, max(0, sl.stop - sl.start))
                arc = 0.75 + 0.25 * np.sin(np.pi * np.sqrt(x))
                plan.voice[sl] = stress * arc
                plan.openness[sl] = vowel[3] * (0.5 + 0.5 * stress) * (0.85 + 0.15 * arc)
                # A vowel's formants glide from onset towards target; the smoothing adds coarticulation.
                plan.formants[sl] = vowel[:3] * rng.uniform(0.94, 1.06, size=3)
                if s == stressed:
                    plan.accent[sl] = rng.uniform(0.08, 0.25)
                nuclei.append((t, nucleus_end, float(vowel[3] * (0.5 + 0.5 * stress))))
                t = nucleus_end
                if rng.uniform() < 0.35:
                    t = _place_consonant(rng, plan, span, _CONSONANTS[rng.choice(coda_idx)], t, tempo, vowel)
                syllables.append((syl_start, min(t, duration_s)))
                phrase_syllables.append((syl_start, t))
            # Words in running speech are mostly joined; sometimes a short break.
            if rng.uniform() < 0.3:
                t += rng.uniform(0.03, 0.09) / tempo
        if phrase_syllables:
            sl = span(phrase_start, t)
            plan.phrase_pos[sl] = np.linspace(0.0, 1.0, sl.stop - sl.start)
        t += rng.uniform(0.25, 0.7)
    nuclei_arr = np.array(nuclei, dtype=np.float64).reshape(-1, 3)
    nuclei_arr[:, :2] = np.clip(nuclei_arr[:, :2], 0.0, duration_s)
    return plan, syllables, nuclei_arr


def _place_consonant(
    rng: np.random.Generator,
    plan: _Plan,
    span,
    consonant: tuple,
    t: float,
    tempo: float,
    vowel: np.ndarray,
) -> float:
    """Write one consonant's targets starting at ``t``; returns the time it ends."""
    _name, kind, voiced, labial, fc, bw, locus = consonant
    lips = 0.0 if labial else 0.12
    if kind == _KIND_STOP:
        closure = rng.uniform(0.035, 0.065) / tempo
        burst = rng.uniform(0.008, 0.016)
        sl = span(t, t + closure)
        plan.openness[sl] = lips
        plan.formants[sl] = locus
        # Voiced stops keep a weak voice bar through the closure.
        plan.voice[sl] = 0.08 if voiced else 0.0
        sl = span(t + closure, t + closure + burst)
        plan.noise[sl] = 0.45
        plan.noise_fc[sl] = fc
        plan.noise_bw[sl] = bw
        plan.openness[sl] = lips + 0.1
        end = t + closure + burst
        if not voiced:
            # Aspiration: breath noise through the following vowel's formants before voicing starts.
            asp = rng.uniform(0.02, 0.045)
            sl = span(end, end + asp)
            plan.noise[sl] = 0.18
            plan.noise_fc[sl] = 0.0
            plan.formants[sl] = vowel[:3]
            plan.openness[sl] = 0.5 * vowel[3]
            end += asp
        return end
    if kind == _KIND_FRICATIVE:
        length = rng.uniform(0.06, 0.11) / tempo
        sl = span(t, t + length)
        if fc == 0.0:  # /h/: aspiration shaped by the vowel it precedes
            plan.noise[sl] = 0.16
            plan.noise_fc[sl] = 0.0
            plan.formants[sl] = vowel[:3]
            plan.openness[sl] = 0.6 * vowel[3]
        else:
            plan.noise[sl] = 0.4 if fc > 4000 else 0.35
            plan.noise_fc[sl] = fc
            plan.noise_bw[sl] = bw
            plan.formants[sl] = locus
            plan.openness[sl] = lips + 0.05
            plan.voice[sl] = 0.15 if voiced else 0.0
        return t + length
    length = rng.uniform(0.045, 0.08) / tempo
    sl = span(t, t + length)
    plan.formants[sl] = locus
    plan.openness[sl] = lips if kind == _KIND_NASAL else lips + 0.12
    plan.voice[sl] = 0.25 if kind == _KIND_NASAL else 0.45
    return t + length


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
    rng: np.random.Generator, plan: _Plan, ctl_times: np.ndarray, f0_base: float, hop: int, sample_rate: int
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
