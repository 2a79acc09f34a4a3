"""Putting generated pixels back into source frames: only where the model generated, with feathered edges.

In V2V the tokens outside the mask ``M`` are clean conditions; the decoded video re-renders them through the
VAE, which loses detail. A dub keeps the source there and takes the generated pixels only inside the
(dilated, feathered) mask, as lip-sync tools do when they paste a generated mouth back.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from trainer.model.masks import latent_frame_groups


def frame_mask(tokens: np.ndarray, spatial: int, feather_px: float) -> np.ndarray:
    """The pixel mask of one latent frame: its generated tokens, grown and feathered.

    Args:
        tokens: ``[h, w]`` (1 = generated).
        spatial: Pixels per token side (the VAE's spatial compression, 32).
        feather_px: Standard deviation of the Gaussian that softens the mask edge (0: hard edge). The mask is
            first grown by ``2·feather_px`` so the feathered edge lies outside the generated region's core.

    Returns:
        float32 ``[h·spatial, w·spatial]`` in [0, 1].
    """
    m = np.kron(np.asarray(tokens, np.float32), np.ones((spatial, spatial), np.float32))
    grow = int(round(2 * feather_px))
    if grow > 0:
        m = cv2.dilate(m, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    if feather_px > 0:
        m = cv2.GaussianBlur(m, (0, 0), feather_px)
    return np.clip(m, 0.0, 1.0)


def pixel_mask(token_mask: torch.Tensor, num_frames: int, spatial: int, temporal: int, feather_px: float) -> np.ndarray:
    """Per-video-frame float mask in [0, 1] from a latent token mask (:func:`frame_mask` of each latent frame).

    Args:
        token_mask: ``[T, h, w]`` (1 = generated) for one clip.
        num_frames: Video frames ``8(T − 1) + 1``.
        spatial: Pixels per token side (the VAE's spatial compression, 32).
        temporal: Video frames per latent frame after frame 0 (the VAE's temporal compression, 8).
        feather_px: Gaussian softness of the edge (see :func:`frame_mask`).

    Returns:
        float32 ``[F, h·spatial, w·spatial]``.
    """
    tokens = token_mask.detach().float().cpu().numpy()
    _, height, width = tokens.shape
    out = np.zeros((num_frames, height * spatial, width * spatial), np.float32)
    for t, group in enumerate(latent_frame_groups(num_frames, temporal)):
        out[group.start : group.stop] = frame_mask(tokens[t], spatial, feather_px)
    return out


def paste(generated: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask · generated + (1 − mask) · source`` per pixel, uint8 ``[F, H, W, 3]``."""
    if generated.shape != source.shape or mask.shape != generated.shape[:3]:
        raise ValueError(f"generated {generated.shape}, source {source.shape} and mask {mask.shape} do not match")
    m = mask[..., None]
    out = m * generated.astype(np.float32) + (1.0 - m) * source.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
