"""From sampled latents to an mp4 with the driving audio."""

from __future__ import annotations

import os

import numpy as np
import torch

from data_prep.media import write_mp4
from eval.sampler.vae_tiling import tiled_decode
from trainer.model.vae import denormalize_latents


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, tile_latents: int = 16, overlap_frames: int = 16) -> np.ndarray:
    """Decode normalised latents to uint8 frames, in temporal tiles with a 16-frame overlap (paper §B).

    Args:
        vae: The LTX VAE the run trained with.
        latents: Normalised latents ``[B, C, T, h, w]`` (the DiT's space).
        tile_latents: Latent frames per decoder tile.
        overlap_frames: Video frames shared by consecutive tiles.

    Returns:
        ``[B, 8(T − 1) + 1, 32h, 32w, 3]`` uint8.
    """
    raw = denormalize_latents(latents.to(vae.device, torch.float32), vae).to(vae.dtype)
    temb = None
    if getattr(vae.config, "timestep_conditioning", False):
        # LTX 0.9.x decoders are timestep-conditioned; decoding clean latents uses t = 0.
        temb = torch.zeros(raw.shape[0], device=raw.device, dtype=raw.dtype)
    video = tiled_decode(vae, raw, temb, tile_latents, overlap_frames)  # [B, 3, F, H, W] in [-1, 1]
    frames = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(0, 2, 3, 4, 1).cpu().numpy()


def write_sample(
    path: str | os.PathLike, frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate: int | None
) -> None:
    """Write one sample as H.264 mp4 muxed with its driving audio (trimmed to the video's length), atomically.

    Args:
        path: Output file.
        frames: ``[F, H, W, 3]`` uint8.
        fps: Frame rate.
        audio: Mono ``[S]`` float32 in [−1, 1] starting at the first frame, or ``None``.
        sample_rate: Audio rate (with ``audio``).
    """
    if audio is not None:
        audio = audio[: int(round(frames.shape[0] / fps * sample_rate))]
    write_mp4(path, frames, fps, audio=audio, sample_rate=sample_rate)
