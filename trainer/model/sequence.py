"""Token layout of the DiT input: video tokens, reference tokens, RoPE coordinates.

One implementation for the trainer and the sampler, so that what the model sees at inference is what
it saw in training. The DiT input is ``z_in = [reference tokens, video tokens]`` along the sequence.

RoPE coordinates follow diffusers' LTX condition pipeline: a token's temporal coordinate is the first
video frame its latent frame covers, ``max(8τ − 7, 0)``, divided by the clip's fps (so every sample's
real frame rate reaches RoPE), and its spatial coordinates are its pixel position (token index × 32).
Identity reference frames get sentinel latent indices ``τ = −1, −2, …`` whose coordinate continues
the same spacing below zero, ``8τ``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def patchify(latents: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, H, W]`` latents to ``[B, T·H·W, C]`` tokens (frame-major, then rows, then columns)."""
    return latents.flatten(2).transpose(1, 2)


def unpatchify(tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, T·H·W, C]`` to ``[B, C, T, H, W]``."""
    bsz, n, ch = tokens.shape
    if n != frames * height * width:
        raise ValueError(f"{n} tokens cannot form a {frames}x{height}x{width} latent grid")
    return tokens.transpose(1, 2).reshape(bsz, ch, frames, height, width)


def latent_index_to_frame_coord(index: torch.Tensor, temporal_compression: int = 8) -> torch.Tensor:
    """Temporal RoPE coordinate, in video frames, of (possibly negative, possibly fractional) latent indices.

    Args:
        index: Latent frame indices ``τ`` (any shape, float or int).
        temporal_compression: Video frames per latent frame after frame 0.

    Returns:
        ``max(8τ − 7, 0)`` for ``τ ≥ 0`` and ``8τ`` for sentinel ``τ < 0`` (float32, same shape).
    """
    s = temporal_compression
    tau = index.to(torch.float32)
    return torch.where(tau >= 0, (tau * s + 1 - s).clamp(min=0), tau * s)


def grid_coords(
    frame_index: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    fps: torch.Tensor,
    spatial_compression: int = 32,
    temporal_compression: int = 8,
) -> torch.Tensor:
    """RoPE coordinates of tokens given their latent frame, row and column.

    Args:
        frame_index: Latent frame index per token ``[B, N]`` (negative for references).
        rows: Token row per token ``[B, N]``.
        cols: Token column per token ``[B, N]``.
        fps: Frame rate per sample ``[B]``.
        spatial_compression: Pixels per token side.
        temporal_compression: Video frames per latent frame.

    Returns:
        ``[B, 3, N]`` float32: (seconds, pixel row, pixel column).
    """
    t = latent_index_to_frame_coord(frame_index, temporal_compression) / fps.to(torch.float32)[:, None]
    return torch.stack(
        [t, rows.to(torch.float32) * spatial_compression, cols.to(torch.float32) * spatial_compression], dim=1
    )


def video_token_grid(bsz: int, frames: int, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Latent frame, row and column of every video token in :func:`patchify` order.

    Returns:
        Three ``[B, T·H·W]`` int64 tensors.
    """
    f, r, c = torch.meshgrid(
        torch.arange(frames, device=device),
        torch.arange(height, device=device),
        torch.arange(width, device=device),
        indexing="ij",
    )
    return tuple(x.reshape(1, -1).expand(bsz, -1) for x in (f, r, c))


def video_coords(
    bsz: int,
    frames: int,
    height: int,
    width: int,
    fps: torch.Tensor,
    device: torch.device,
    spatial_compression: int = 32,
    temporal_compression: int = 8,
) -> torch.Tensor:
    """RoPE coordinates ``[B, 3, T·H·W]`` of a clip's video tokens (see module docstring)."""
    f, r, c = video_token_grid(bsz, frames, height, width, device)
    return grid_coords(f, r, c, fps.to(device), spatial_compression, temporal_compression)


@dataclass
class ReferenceTokens:
    """Clean reference tokens to prepend to the video tokens.

    Attributes:
        tokens: ``[B, R·h·w, C]`` latents of the selected token boxes.
        coords: ``[B, 3, R·h·w]`` RoPE coordinates.
    """

    tokens: torch.Tensor
    coords: torch.Tensor

    @property
    def count(self) -> int:
        """Reference tokens per sample."""
        return self.tokens.shape[1]


def batch_token_boxes(boxes: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Give every sample's token box the batch's largest size, centred on its own box and kept in the grid.

    Reference tokens change the sequence length, and a batch must share one length; growing each
    sample's box to the largest one keeps every lower face whole.

    Args:
        boxes: Token-unit boxes ``[B, 4]`` (row0, col0, row1, col1), end-exclusive, int64.
        grid_h: Latent rows.
        grid_w: Latent columns.

    Returns:
        ``[B, 4]`` boxes of equal size.
    """
    heights = boxes[:, 2] - boxes[:, 0]
    widths = boxes[:, 3] - boxes[:, 1]
    bh = int(heights.max().clamp(1, grid_h))
    bw = int(widths.max().clamp(1, grid_w))
    cy = (boxes[:, 0] + boxes[:, 2]) // 2
    cx = (boxes[:, 1] + boxes[:, 3]) // 2
    r0 = (cy - bh // 2).clamp(0, grid_h - bh)
    c0 = (cx - bw // 2).clamp(0, grid_w - bw)
    return torch.stack([r0, c0, r0 + bh, c0 + bw], dim=1)


def reference_tokens(
    latents: torch.Tensor,
    token_boxes: torch.Tensor,
    frame_index: torch.Tensor,
    fps: torch.Tensor,
    spatial_compression: int = 32,
    temporal_compression: int = 8,
) -> ReferenceTokens:
    """Cut equal-size token boxes out of reference latents.

    Args:
        latents: Reference latents ``[B, C, R, H, W]`` (one latent frame per reference frame).
        token_boxes: ``[B, 4]`` equal-size boxes from :func:`batch_token_boxes` (the whole grid for
            full-frame references).
        frame_index: Latent index per reference frame ``[R]`` or ``[B, R]`` (sentinels ``−1, −2, …``
            for identity references; Eq. 7 indices for frame references at inference).
        fps: ``[B]``.
        spatial_compression: Pixels per token side.
        temporal_compression: Video frames per latent frame.

    Returns:
        :class:`ReferenceTokens` with ``R·h·w`` tokens per sample.
    """
    bsz, _, refs, _, _ = latents.shape
    bh = int(token_boxes[0, 2] - token_boxes[0, 0])
    bw = int(token_boxes[0, 3] - token_boxes[0, 1])
    if frame_index.ndim == 1:
        frame_index = frame_index[None].expand(bsz, -1)
    toks, coords = [], []
    for b in range(bsz):
        r0, c0 = int(token_boxes[b, 0]), int(token_boxes[b, 1])
        crop = latents[b : b + 1, :, :, r0 : r0 + bh, c0 : c0 + bw]
        toks.append(patchify(crop))
        f, r, c = video_token_grid(1, refs, bh, bw, latents.device)
        tau = frame_index[b].to(latents.device)[f]
        coords.append(grid_coords(tau, r + r0, c + c0, fps[b : b + 1], spatial_compression, temporal_compression))
    return ReferenceTokens(tokens=torch.cat(toks), coords=torch.cat(coords))


def identity_reference_index(count: int, device: torch.device | None = None) -> torch.Tensor:
    """Sentinel latent indices ``[−1, −2, …, −count]`` of identity reference frames (paper §3.4)."""
    return -torch.arange(1, count + 1, device=device)
