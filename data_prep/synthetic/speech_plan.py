"""The articulation plan of a synthetic utterance: what is said, and the control targets that say it.

An utterance is laid out as phrases of words of syllables (onset consonant, vowel nucleus, optional coda)
drawn from a small phone inventory (vowel formants and mouth opening, consonant kinds, noise bands and
locus formants), and each phone's targets (voicing, noise, formants, mouth opening, pitch accent, phrase
position) are written onto the control grid (:class:`UtterancePlan`). :mod:`data_prep.synthetic.speech`
smooths and renders them as sound and as the mouth-opening track.
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


@dataclasses.dataclass
class UtterancePlan:
    """Control targets on the hop grid, filled in segment by segment before smoothing."""

    voice: np.ndarray  # voicing amplitude target
    noise: np.ndarray  # noise amplitude target (fricatives, bursts, aspiration)
    noise_fc: np.ndarray  # noise band centre, Hz; 0 = aspiration shaped by the formants
    noise_bw: np.ndarray  # noise bandwidth, Hz
    formants: np.ndarray  # [C, 3] F1..F3 targets, Hz
    openness: np.ndarray  # mouth opening target
    accent: np.ndarray  # F0 accent target (relative pitch raise)
    phrase_pos: np.ndarray  # position within the phrase in [0, 1], for declination; -1 in pauses


def plan_utterance(
    rng: np.random.Generator, duration_s: float, ctl_times: np.ndarray, tempo: float
) -> tuple[UtterancePlan, list[tuple[float, float]], np.ndarray]:
    """Lay out phrases, words and syllables and rasterise their targets onto the control grid.

    Args:
        rng: Generator the utterance is drawn from (the caller's, so one seed gives one track).
        duration_s: Length of the utterance in seconds.
        ctl_times: float64 [C] times (seconds) of the control grid, evenly spaced.
        tempo: Talking speed factor (> 1: faster).

    Returns:
        ``(plan, syllables, nuclei)``: the unsmoothed targets on the grid; (start_s, end_s) of every
        syllable; float64 [K, 3] vowel nuclei (start_s, end_s, peak openness).
    """
    num_ctl = ctl_times.shape[0]
    dt = ctl_times[1] - ctl_times[0]
    plan = UtterancePlan(
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
    plan: UtterancePlan,
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
