"""The lip-sync benchmark's videos of a case: the trained and base models' dubs and the VAE ceiling, scored.

Each held-out clip is dubbed in V2V lip mode with the driving speech and pasted into the source; the base
model (no adapter: it cannot hear) dubs the same way, and the VAE reconstruction of the ground truth is the
best any model on this VAE can do.
"""

from __future__ import annotations

import numpy as np
import torch

from eval.clips import clip_batch, sample_clip
from eval.lipsync.cases import DubCase
from eval.lipsync.scores import DubScores, score_case
from eval.sampler.config import SamplerConfig
from eval.sampler.paste import paste, pixel_mask
from eval.sampler.sampler import EulerSampler
from eval.sampler.video_out import decode_latents
from trainer.config.schema import TrainConfig
from trainer.model.talking_head import TalkingHeadModel
from trainer.model.vae import encode_posterior, normalize_latents
from trainer.stage_model import base_stage_config, build_stage_model

# Feather of the paste mask (pixels): soft enough to hide the seam, small beside a 32-pixel token.
PASTE_FEATHER_PX = 3.0

# Where a dub's generated pixels are kept: all of the generated tokens, or only the mouth's reach within them.
PASTE_REGIONS = ("tokens", "mouth")


@torch.no_grad()
def vae_reconstruction(model: TalkingHeadModel, frames: np.ndarray) -> np.ndarray:
    """Posterior-mean VAE reconstruction of uint8 frames ``[F, H, W, 3]`` (the ceiling arm)."""
    mean, _ = encode_posterior(model.vae, torch.from_numpy(frames)[None].to(model.device))
    return decode_latents(model.vae, normalize_latents(mean, model.vae))[0]


def base_model_of(cfg: TrainConfig, device: torch.device | str) -> TalkingHeadModel:
    """The base model a trained model was built on: its DiT as ``cfg.model`` loads it, without adapter or LoRA."""
    model, _ = build_stage_model(base_stage_config(cfg))
    return model.to(device).eval()


@torch.no_grad()
def dub_video(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    sampler: EulerSampler,
    case: DubCase,
    seed: int,
    identity_refs: bool = True,
    invert_edit: bool = False,
    paste_region: str = "tokens",
) -> tuple[np.ndarray, np.ndarray]:
    """V2V lip-mode dub of the case's source clip driven by the driving clip's speech, pasted into the source.

    Outside the generated tokens the VAE only re-renders the clean source, losing detail; a dub keeps the source
    pixels there and takes the generated ones inside the (grown, feathered) mask, as lip-sync tools do.

    Args:
        model: The model that dubs.
        cfg: The training config of the trained model (its data layout and sampling settings).
        sampler: A sampler over ``model.dit``.
        case: The case.
        seed: Seed of the posterior sample.
        identity_refs: Prepend the identity reference tokens.
        invert_edit: Dub by inversion editing (:mod:`eval.sampler.inversion`): the source inverted with its own
            speech, then denoised with the driving speech.
        paste_region: ``tokens``: every pixel of the generated tokens (grown, feathered) is the dub's;
            ``mouth``: only those within the mouth's reach (``case.reach``), the rest stays the source's.

    Returns:
        ``(frames, mask)``: the pasted dub, uint8 ``[F, H, W, 3]``, and the paste mask, float32 ``[F, H, W]``.

    Raises:
        ValueError: ``paste_region`` is not one of :data:`PASTE_REGIONS`.
    """
    if paste_region not in PASTE_REGIONS:
        raise ValueError(f"paste_region={paste_region!r}: expected one of {', '.join(PASTE_REGIONS)}")
    num_refs = cfg.objective.num_reference_frames
    batch = clip_batch(case.source, num_refs, whisper=case.driving.whisper)
    mode, edit = "v2v", None
    if invert_edit:
        mode, batch, edit = "invert_edit", clip_batch(case.source, num_refs), batch
    frames, tokens = sample_clip(
        model, cfg, sampler, batch, mode, "lip", identity_refs, seed, return_mask=True, edit_batch=edit
    )
    mask = pixel_mask(tokens, frames.shape[0], model.spatial_compression, model.temporal_compression, PASTE_FEATHER_PX)
    if paste_region == "mouth":
        mask = mask * case.reach
    return paste(frames, case.source.frames, mask), mask


def run_cases(
    model: TalkingHeadModel,
    base: TalkingHeadModel,
    cfg: TrainConfig,
    sampler_cfg: SamplerConfig,
    cases: list[DubCase],
    seed: int,
    invert_edit: bool = False,
    paste_region: str = "tokens",
) -> list[tuple[dict, DubScores]]:
    """Every arm's video and scores for each case.

    Args:
        model: The trained model (stage 1 or 2).
        base: :func:`base_model_of` its config.
        cfg: The trained model's training config.
        sampler_cfg: The sampler's settings.
        cases: The cases.
        seed: Seed of the posterior samples (the sampler's noise comes from ``sampler_cfg.seed``).
        invert_edit: Both models dub by inversion editing instead of sampling from noise.
        paste_region: What of the generated pixels a dub keeps (:data:`PASTE_REGIONS`, :func:`dub_video`); the
            ceiling is pasted through the same mask.

    Returns:
        ``(videos by arm, scores)`` per case.
    """
    loc = cfg.objective.timestep_loc
    trained_sampler = EulerSampler(model.dit, sampler_cfg, loc)
    base_sampler = EulerSampler(base.dit, sampler_cfg, loc)
    out = []
    for i, case in enumerate(cases):
        trained, mask = dub_video(
            model, cfg, trained_sampler, case, seed + i, invert_edit=invert_edit, paste_region=paste_region
        )
        videos = {
            "trained": trained,
            "base": dub_video(
                base, cfg, base_sampler, case, seed + i, invert_edit=invert_edit, paste_region=paste_region
            )[0],
            "source": case.source.frames,
            # The best dub on this VAE: the ground truth's reconstruction, pasted into the source the way a dub is
            # (outside the paste mask no dub can undo the source's own encoding).
            "vae_ceiling": paste(vae_reconstruction(model, case.ground_truth), case.source.frames, mask),
        }
        closed = paste(vae_reconstruction(model, case.closed), case.closed, mask)
        out.append((videos, score_case(case, videos, {"trained": closed, "base": closed, "vae_ceiling": closed})))
    return out
