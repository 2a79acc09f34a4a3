"""The options of a VAE fit (``python -m trainer.vae_fit key=value ...``), their checks, and the tiny base's VAE.

:class:`VAEFitConfig` is registered as the config ``vae_fit``; :func:`validate` refuses values the fit cannot use
before any clip is read; :func:`tiny_base_vae_arch` is the default architecture (the VAE of talkdit's tiny base).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from trainer.config.compose import register_schema
from trainer.config.errors import ConfigError
from trainer.config.validate import validate_frames
from trainer.data.schema import CLIP_FRAME_STEP


def tiny_base_vae_arch() -> dict[str, Any]:
    """The VAE of talkdit's tiny pretrained base: LTX-Video 0.9.5's block layout at small widths (9.8 M parameters).

    0.9.5's blocks (spatial, temporal, then two spatio-temporal downsamplers; residual up/downsampling, as in
    DC-AE) learn faster than 0.9.1's; 128 latent channels, as LTX-Video.
    """
    return {
        "latent_channels": 128,
        "block_out_channels": [16, 32, 64, 128, 256],
        "down_block_types": ["LTXVideo095DownBlock3D"] * 4,
        "decoder_block_out_channels": [32, 64, 128],
        "layers_per_block": [1, 1, 1, 1, 1],
        "decoder_layers_per_block": [1, 1, 1, 1],
        "spatio_temporal_scaling": [True, True, True, True],
        "decoder_spatio_temporal_scaling": [True, True, True],
        "decoder_inject_noise": [False, False, False, False],
        "downsample_type": ["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
        "upsample_residual": [True, True, True],
        "upsample_factor": [2, 2, 2],
        "spatial_compression_ratio": 32,
        "temporal_compression_ratio": 8,
    }


@dataclass
class VAEFitConfig:
    """Options of ``python -m trainer.vae_fit``.

    Attributes:
        shards: Shards of clips to fit on (data_prep's schema: ``video.mp4``, ``lower_face_boxes.npy``).
        output_dir: The VAE folder to write (``config.json``, ``diffusion_pytorch_model.safetensors``).
        arch: ``AutoencoderKLLTXVideo`` arguments (ignored with ``init_from``).
        init_from: A fitted VAE folder to start from (its architecture, weights and, when phases 1-2 are
            skipped, its latent statistics) instead of a fresh VAE.
        image_steps: Optimiser steps on single frames (phase 1).
        clip_steps: Optimiser steps on clips (phase 2): every ``crop_every``-th step whole frames
            (``clip_batch`` clips of ``clip_frames``), the others ``crop``² crops around the lower face
            (``crop_batch`` clips of ``crop_frames``).
        image_batch: Frames per phase-1 step.
        clip_batch: Whole-frame clips per phase-2 step.
        clip_frames: Frames per whole-frame clip, 8k+1.
        crop: Side of the lower-face crops in pixels (a multiple of 32; 0 disables crops).
        crop_batch: Crops per phase-2 crop step.
        crop_frames: Frames per crop, 8k+1.
        crop_every: One whole-frame step in this many phase-2 steps (1: never crops).
        decoder_steps: Optimiser steps of the decoder alone (phase 3, encoder frozen, posterior means).
        decoder_batch: Whole-frame clips per phase-3 step.
        decoder_frames: Frames per phase-3 clip, 8k+1.
        lr: AdamW learning rate after a linear warm-up; it then follows a cosine down to ``lr · lr_final``.
        lr_final: Learning rate at the last step, as a fraction of ``lr``.
        warmup_steps: Linear warm-up steps.
        kl_weight: Weight of the KL term (per latent element) against the per-pixel reconstruction loss.
        motion_weight: Weight of the within-latent-frame motion term (:func:`trainer.vae_fit_loss.fit_step`).
        mouth_weight: Reconstruction weight inside the lower-face boxes (1 = uniform).
        initial_logvar: Initial posterior log-variance (the bias of the encoder's log-variance channel).
        max_clips: Clips read from the shards (held in memory; the first ones in shard order).
        holdout_videos: Source videos (people) whose clips are kept out of the fit, to report the
            reconstruction PSNR on people the VAE never saw.
        checkpoint_every: Steps between saves of the resumable state.
        seed: Seed of the initialisation and of the batch draws.
        overwrite: Refit even when ``output_dir`` holds a finished VAE.
    """

    shards: str = MISSING
    output_dir: str = MISSING
    arch: dict[str, Any] = field(default_factory=tiny_base_vae_arch)
    init_from: str | None = None
    image_steps: int = 400
    clip_steps: int = 400
    image_batch: int = 8
    clip_batch: int = 2
    clip_frames: int = 9
    crop: int = 64
    crop_batch: int = 4
    crop_frames: int = 17
    crop_every: int = 3
    decoder_steps: int = 0
    decoder_batch: int = 4
    decoder_frames: int = 25
    # LTX's VAE normalises every feature vector (RMSNorm without affine): the weights before a norm are scale
    # free, so Adam's per-weight steps turn into large rotations; small steps learn far faster here.
    lr: float = 1e-4
    lr_final: float = 0.1
    warmup_steps: int = 20
    kl_weight: float = 1e-6
    motion_weight: float = 10.0
    mouth_weight: float = 5.0
    initial_logvar: float = -6.0
    max_clips: int = 512
    holdout_videos: int = 1
    checkpoint_every: int = 100
    seed: int = 0
    overwrite: bool = False


def validate(cfg: VAEFitConfig) -> None:
    """Refuse settings the fit cannot use, naming the key.

    Raises:
        ConfigError: A value out of range.
    """
    for key in (
        "image_batch",
        "clip_batch",
        "crop_batch",
        "crop_every",
        "decoder_batch",
        "max_clips",
        "checkpoint_every",
    ):
        if getattr(cfg, key) < 1:
            raise ConfigError(key, getattr(cfg, key), "expected >= 1")
    for key in ("image_steps", "clip_steps", "decoder_steps", "holdout_videos", "warmup_steps"):
        if getattr(cfg, key) < 0:
            raise ConfigError(key, getattr(cfg, key), "expected >= 0")
    if cfg.image_steps + cfg.clip_steps + cfg.decoder_steps < 1:
        raise ConfigError("image_steps", cfg.image_steps, "image_steps + clip_steps + decoder_steps must be >= 1")
    validate_frames("clip_frames", cfg.clip_frames, CLIP_FRAME_STEP)  # cut from shard clips
    validate_frames("crop_frames", cfg.crop_frames, CLIP_FRAME_STEP)
    validate_frames("decoder_frames", cfg.decoder_frames, CLIP_FRAME_STEP)
    if cfg.init_from is not None and not (Path(cfg.init_from) / "config.json").is_file():
        raise ConfigError("init_from", cfg.init_from, "expected a fitted VAE folder (with config.json)")
    if cfg.crop < 0 or cfg.crop % 32:
        raise ConfigError("crop", cfg.crop, "expected 0 or a positive multiple of 32")
    if not cfg.lr > 0:
        raise ConfigError("lr", cfg.lr, "expected > 0")
    if not 0 < cfg.lr_final <= 1:
        raise ConfigError("lr_final", cfg.lr_final, "expected a fraction of lr in (0, 1]")
    for key, low in (("kl_weight", 0), ("motion_weight", 0), ("mouth_weight", 1)):
        if getattr(cfg, key) < low:
            raise ConfigError(key, getattr(cfg, key), f"expected >= {low}")


def register() -> None:
    """Register :class:`VAEFitConfig` as the config ``vae_fit`` (composed like every entry point's)."""
    register_schema("vae_fit", VAEFitConfig)
