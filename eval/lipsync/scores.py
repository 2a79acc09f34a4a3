"""The lip-sync benchmark's scores: each arm's video against the ground truth of its case, and their summary.

Scores are taken inside the region a mouth can reach (the lower-face box of the fully opened mouth, per frame);
mouth opening is measured as the difference from the same person rendered with a closed mouth
(:mod:`eval.metrics.dub`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from eval.lipsync.cases import DubCase
from eval.metrics.dub import (
    closed_in_silence,
    mouth_opening_change,
    opening_calibration,
    pearson,
    region_mse,
    silent_frames,
)
from eval.metrics.pixel import psnr

# The videos scored against the ground truth.
ARMS = ("trained", "base", "source", "vae_ceiling")


def neighbour_correlation(video: np.ndarray) -> float:
    """Correlation of horizontally neighbouring pixels (grey): about 0.9+ for natural video, about 0 for noise."""
    grey = np.asarray(video, np.float64).mean(axis=-1)
    a, b = grey[..., :, :-1].ravel(), grey[..., :, 1:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class DubScores:
    """Scores of one case (every arm against the ground truth).

    Attributes:
        mouth_mse: Arm → mouth-region MSE (grey levels²).
        openness_corr: Arm → correlation of the measured opening with the driving track.
        silence_closed: Arm → share of silent frames with a closed mouth (``None``: no silent frame).
        psnr_trained: Whole-frame PSNR of the trained dub against the ground truth (dB).
        neighbour_corr: Arm → neighbouring-pixel correlation of the arm's video.
    """

    mouth_mse: dict[str, float]
    openness_corr: dict[str, float | None]
    silence_closed: dict[str, float | None]
    psnr_trained: float
    neighbour_corr: dict[str, float]


def score_case(case: DubCase, videos: dict[str, np.ndarray], closed: dict[str, np.ndarray] | None = None) -> DubScores:
    """Score each arm's video of a case; the ``vae_ceiling`` arm calibrates the opening scale.

    Args:
        case: The case.
        videos: Arm name → ``[F, H, W, 3]`` uint8 (every name of :data:`ARMS`).
        closed: Arm name → the closed-mouth video as that arm's renderer shows it (for VAE-decoded arms the
            VAE reconstruction of ``case.closed``, so that VAE blur does not count as an open mouth); arms
            not named use ``case.closed``.
    """
    closed = closed or {}
    openings = {arm: mouth_opening_change(v, closed.get(arm, case.closed), case.masks) for arm, v in videos.items()}
    try:
        calibration = opening_calibration(openings["vae_ceiling"], case.opening)
    except ValueError:
        calibration = None
    silent = silent_frames(case.driving_audio, case.sample_rate, case.source.fps, case.source.frames.shape[0])
    return DubScores(
        mouth_mse={arm: region_mse(v, case.ground_truth, case.masks) for arm, v in videos.items()},
        openness_corr={arm: pearson(o, case.opening) for arm, o in openings.items()},
        silence_closed={
            arm: None if calibration is None else closed_in_silence(o, silent, calibration)
            for arm, o in openings.items()
        },
        psnr_trained=psnr(videos["trained"], case.ground_truth),
        neighbour_corr={arm: neighbour_correlation(v) for arm, v in videos.items()},
    )


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(got)) if got else None


def summarize(scores: list[DubScores]) -> dict:
    """The benchmark's JSON keys from per-case scores (means over cases; correlations averaged per clip)."""
    out: dict = {"clips": len(scores)}
    for arm in ARMS:
        out[f"mouth_mse_{arm}"] = _mean([s.mouth_mse[arm] for s in scores])
    src, trained, ceiling = out["mouth_mse_source"], out["mouth_mse_trained"], out["mouth_mse_vae_ceiling"]
    out["gap_closed"] = None
    if None not in (src, trained, ceiling) and src > ceiling:
        out["gap_closed"] = (src - trained) / (src - ceiling)
    out["openness_corr_trained"] = _mean([s.openness_corr["trained"] for s in scores])
    out["openness_corr_base"] = _mean([s.openness_corr["base"] for s in scores])
    out["openness_corr_source"] = _mean([s.openness_corr["source"] for s in scores])
    out["openness_measure_check"] = _mean([s.openness_corr["vae_ceiling"] for s in scores])
    out["silence_closed_trained"] = _mean([s.silence_closed["trained"] for s in scores])
    out["silence_closed_base"] = _mean([s.silence_closed["base"] for s in scores])
    # What a perfect model scores on this VAE: the same check on the reconstruction of the ground-truth dub.
    out["silence_closed_vae_ceiling"] = _mean([s.silence_closed["vae_ceiling"] for s in scores])
    out["psnr_trained_db"] = _mean([s.psnr_trained for s in scores])
    out["neighbour_corr_trained"] = _mean([s.neighbour_corr["trained"] for s in scores])
    out["neighbour_corr_source"] = _mean([s.neighbour_corr["source"] for s in scores])
    return out


def scores_json(scores: DubScores) -> str:
    """One case's scores as JSON."""
    return json.dumps(dataclasses.asdict(scores), sort_keys=True)
