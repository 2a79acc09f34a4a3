"""The frozen LTX Video-VAE: loading and the latent normalisation diffusers' LTX pipelines use."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLLTXVideo
from diffusers.loaders.single_file_utils import convert_ltx_vae_checkpoint_to_diffusers

from trainer.config.schema import VAEConfig
from trainer.model.backbone import LTX_SOURCE_HINT
from trainer.model.weights import load_safetensors_checked, load_strict, require_file


def load_vae(cfg: VAEConfig) -> AutoencoderKLLTXVideo:
    """Load (or explicitly randomly initialise) the LTX VAE.

    Args:
        cfg: Source, path and (for random/single-file) architecture.

    Returns:
        The VAE in float32, eval mode, frozen.

    Raises:
        FileNotFoundError: A folder or weight file is missing (names it and where it comes from).
        ValueError: The weights do not fit the architecture or the compression is not 32x32x8.
    """
    if cfg.source == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            vae = AutoencoderKLLTXVideo(**cfg.arch)
    elif cfg.source == "diffusers":
        folder = Path(cfg.path) / cfg.subfolder if cfg.subfolder else Path(cfg.path)
        require_file(folder / "config.json", LTX_SOURCE_HINT)
        if not list(folder.glob("*.safetensors")):
            raise FileNotFoundError(f"no diffusion_pytorch_model*.safetensors in {folder}; {LTX_SOURCE_HINT}")
        vae = AutoencoderKLLTXVideo.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    elif cfg.source == "single_file":
        path = require_file(Path(cfg.path), LTX_SOURCE_HINT)
        state = convert_ltx_vae_checkpoint_to_diffusers(load_safetensors_checked(path))
        vae = AutoencoderKLLTXVideo(**cfg.arch)
        load_strict(vae, state, path, "model.vae.arch (the VAE weights of another LTX-Video version or size)")
    else:
        raise ValueError(f"model.vae.source={cfg.source!r}: expected random, diffusers or single_file")
    if (
        vae.spatial_compression_ratio != cfg.spatial_compression
        or vae.temporal_compression_ratio != cfg.temporal_compression
    ):
        raise ValueError(
            f"VAE compresses {vae.spatial_compression_ratio}x spatially and {vae.temporal_compression_ratio}x "
            f"temporally; model.vae expects {cfg.spatial_compression}x and {cfg.temporal_compression}x"
        )
    vae.requires_grad_(False)
    vae.eval()
    return vae


def normalize_latents(latents: torch.Tensor, vae: AutoencoderKLLTXVideo) -> torch.Tensor:
    """Raw VAE latents ``[B, C, T, H, W]`` to the DiT's normalised space (per-channel statistics)."""
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents)
    return (latents - mean) * vae.config.scaling_factor / std


def denormalize_latents(latents: torch.Tensor, vae: AutoencoderKLLTXVideo) -> torch.Tensor:
    """Inverse of :func:`normalize_latents`."""
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents)
    return latents * std / vae.config.scaling_factor + mean


def frames_to_vae_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames ``[B, F, H, W, 3]`` to VAE input ``[B, 3, F, H, W]`` in [−1, 1] (float32)."""
    return frames.permute(0, 4, 1, 2, 3).to(torch.float32).div(127.5).sub(1.0)


@torch.no_grad()
def encode_posterior(vae: AutoencoderKLLTXVideo, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance of raw latents for uint8 frames.

    Args:
        vae: The frozen VAE.
        frames: ``[B, F, H, W, 3]`` uint8 with ``F = 8k + 1``, ``H, W`` multiples of 32.

    Returns:
        ``(mean, logvar)``, each ``[B, C, k + 1, H/32, W/32]`` float32 (not normalised).
    """
    dist = vae.encode(frames_to_vae_input(frames).to(vae.device, vae.dtype)).latent_dist
    return dist.mean.float(), dist.logvar.float()


def sample_posterior(
    mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw raw latents from a diagonal Gaussian posterior (``mean + σ·ε``)."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * noise
