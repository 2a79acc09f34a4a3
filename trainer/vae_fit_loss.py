"""The VAE fit's loss (reconstruction, KL, within-latent-frame motion) and its end-of-fit statistics."""

from __future__ import annotations

import numpy as np
import torch

from trainer.vae_fit_data import FitClip


def kl_per_element(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL divergence of ``N(mean, exp(logvar))`` from ``N(0, 1)``, averaged over every latent element."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()


def _within_group(video: torch.Tensor, temporal: int) -> torch.Tensor:
    """What changes inside each latent frame: frames ``1..`` minus their group's mean ``[B, C, F−1, H, W]``."""
    groups = video[:, :, 1:].unflatten(2, (-1, temporal))
    return (groups - groups.mean(dim=3, keepdim=True)).flatten(2, 3)


def fit_step(
    vae,
    video: torch.Tensor,
    weight: torch.Tensor,
    kl_weight: float,
    motion_weight: float,
    gen: torch.Generator,
    decoder_only: bool = False,
) -> dict:
    """Loss of one batch: weighted squared error of a posterior sample's reconstruction, KL, and motion.

    The motion term is the weighted squared error of what changes inside each latent frame (each frame minus
    its 8-frame group's mean): the part of a talking head an 8x temporal code must keep (a mouth's per-frame
    opening) and the part a young VAE blurs first. With ``decoder_only`` the encoder runs without gradient
    and the decoder reads its posterior means (no KL term).
    """
    if decoder_only:
        with torch.no_grad():
            latents = vae.encode(video).latent_dist.mean
        kl = torch.zeros(())
    else:
        dist = vae.encode(video).latent_dist
        noise = torch.randn(dist.mean.shape, generator=gen, dtype=dist.mean.dtype)
        latents = dist.mean + dist.std * noise
        kl = kl_per_element(dist.mean, dist.logvar)
    recon = vae.decode(latents).sample
    norm = weight.mean()
    rec = ((recon - video).square() * weight).mean() / norm
    loss = rec + kl_weight * kl
    motion = torch.zeros(())
    temporal = vae.temporal_compression_ratio
    if motion_weight > 0 and video.shape[2] > 1:
        diff = _within_group(recon, temporal) - _within_group(video, temporal)
        motion = (diff.square() * weight[:, :, 1:]).mean() / norm
        loss = loss + motion_weight * motion
    return {"loss": loss, "rec": rec.detach(), "kl": kl.detach(), "motion": motion.detach()}


@torch.no_grad()
def latent_statistics(vae, clips: list[FitClip], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of the posterior means of the clips' first ``frames`` frames."""
    t = vae.temporal_compression_ratio
    sums, sq, count = 0.0, 0.0, 0
    for clip in clips:
        n = min(frames, (clip.frames.shape[0] - 1) // t * t + 1)
        video = torch.from_numpy(clip.frames[None, :n]).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)
        mean = vae.encode(video).latent_dist.mean.double()  # [1, C, T, h, w]
        sums = sums + mean.sum(dim=(0, 2, 3, 4))
        sq = sq + mean.square().sum(dim=(0, 2, 3, 4))
        count += mean[0, 0].numel()
    mu = sums / count
    std = (sq / count - mu.square()).clamp(min=1e-12).sqrt()
    return mu.float(), std.float()


@torch.no_grad()
def reconstruction_psnr(vae, clips: list[FitClip], frames: int) -> float | None:
    """PSNR (dB, uint8 scale) of the posterior-mean reconstructions of the clips' first ``frames`` frames."""
    t = vae.temporal_compression_ratio
    errors = []
    for clip in clips:
        n = min(frames, (clip.frames.shape[0] - 1) // t * t + 1)
        video = torch.from_numpy(clip.frames[None, :n]).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)
        recon = vae.decode(vae.encode(video).latent_dist.mean).sample.clamp(-1.0, 1.0)
        errors.append(((recon - video) * 127.5).square().mean().item())
    if not errors:
        return None
    return float(10.0 * np.log10(255.0**2 / max(float(np.mean(errors)), 1e-12)))
