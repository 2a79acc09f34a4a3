"""Face masks at latent-token resolution (EditYourself §3.2, V2V masking).

Per latent frame, the mask is the enclosing box of the lower-face boxes of the video frames that latent
frame covers (frame 0 alone, then groups of 8), dilated to whole 32×32-pixel tokens.
"""

from __future__ import annotations

import torch


def latent_frame_groups(num_frames: int, temporal_compression: int = 8) -> list[range]:
    """Video frames covered by each latent frame: ``[0]``, ``[1..8]``, ``[9..16]`` and so on.

    Args:
        num_frames: ``8k + 1`` video frames.
        temporal_compression: Frames per latent frame after frame 0.

    Returns:
        One ``range`` of video frame indices per latent frame.
    """
    s = temporal_compression
    if num_frames % s != 1:
        raise ValueError(f"{num_frames} frames is not {s}k+1")
    return [range(0, 1)] + [range(s * (n - 1) + 1, s * n + 1) for n in range(1, (num_frames - 1) // s + 1)]


def group_boxes(boxes: torch.Tensor, temporal_compression: int = 8) -> torch.Tensor:
    """Enclosing box per latent frame.

    Args:
        boxes: Per-frame boxes ``[B, F, 4]`` (x0, y0, x1, y1 pixels); rows with NaN (no face found)
            are ignored.
        temporal_compression: Frames per latent frame after frame 0.

    Returns:
        ``[B, T, 4]``; NaN where no frame of the group has a box.
    """
    groups = latent_frame_groups(boxes.shape[1], temporal_compression)
    out = []
    for g in groups:
        part = boxes[:, g.start : g.stop]
        lo = torch.nan_to_num(part[..., :2], nan=float("inf")).amin(dim=1)
        hi = torch.nan_to_num(part[..., 2:], nan=float("-inf")).amax(dim=1)
        box = torch.cat([lo, hi], dim=-1)
        box = torch.where(torch.isfinite(box), box, torch.full_like(box, float("nan")))
        out.append(box)
    return torch.stack(out, dim=1)


def box_to_token_box(box: torch.Tensor, grid_h: int, grid_w: int, spatial_compression: int = 32) -> torch.Tensor:
    """Pixel boxes to end-exclusive token boxes covering every token the box touches.

    Args:
        box: ``[..., 4]`` pixel boxes (x0, y0, x1, y1); NaN boxes give an empty token box.
        grid_h: Latent rows.
        grid_w: Latent columns.
        spatial_compression: Pixels per token side.

    Returns:
        ``[..., 4]`` int64 (row0, col0, row1, col1).
    """
    s = spatial_compression
    empty = torch.isnan(box).any(dim=-1)
    b = torch.nan_to_num(box, nan=0.0)
    c0 = torch.floor(b[..., 0] / s).clamp(0, grid_w)
    r0 = torch.floor(b[..., 1] / s).clamp(0, grid_h)
    c1 = torch.ceil(b[..., 2] / s).clamp(0, grid_w)
    r1 = torch.ceil(b[..., 3] / s).clamp(0, grid_h)
    out = torch.stack([r0, c0, torch.maximum(r1, r0), torch.maximum(c1, c0)], dim=-1).long()
    return torch.where(empty[..., None], torch.zeros_like(out), out)


def token_box_mask(token_boxes: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Rasterise token boxes ``[..., 4]`` into boolean masks ``[..., grid_h, grid_w]``."""
    rows = torch.arange(grid_h, device=token_boxes.device)
    cols = torch.arange(grid_w, device=token_boxes.device)
    tb = token_boxes[..., None]
    in_r = (rows >= tb[..., 0, :]) & (rows < tb[..., 2, :])
    in_c = (cols >= tb[..., 1, :]) & (cols < tb[..., 3, :])
    return in_r[..., :, None] & in_c[..., None, :]


def face_token_mask(
    boxes: torch.Tensor,
    grid_h: int,
    grid_w: int,
    spatial_compression: int = 32,
    temporal_compression: int = 8,
) -> torch.Tensor:
    """Lower-face mask per latent frame at token resolution.

    Args:
        boxes: Lower-face boxes per video frame ``[B, F, 4]`` in pixels of the training resolution.
        grid_h: Latent rows (height / 32).
        grid_w: Latent columns (width / 32).
        spatial_compression: Pixels per token side.
        temporal_compression: Frames per latent frame after frame 0.

    Returns:
        ``[B, T, grid_h, grid_w]`` bool.
    """
    grouped = group_boxes(boxes, temporal_compression)
    return token_box_mask(box_to_token_box(grouped, grid_h, grid_w, spatial_compression), grid_h, grid_w)


def adaptive_boxes(boxes: torch.Tensor, padding: float = 0.1, alpha: float = 0.75) -> torch.Tensor:
    """SayAnything's adaptive mask boxes: padded, then smoothed forward in time (SayAnything Eq. 6).

    ``x'_t = α x_t + (1 − α) x_{t+1}`` for every coordinate (the last frame keeps its box); each box is
    first grown by ``padding`` times its width and height on every side.

    Args:
        boxes: ``[B, F, 4]`` (x0, y0, x1, y1) pixels; NaN rows stay NaN.
        padding: Growth per side as a fraction of the box size.
        alpha: Weight of the current frame.

    Returns:
        ``[B, F, 4]``.
    """
    w = (boxes[..., 2] - boxes[..., 0]).unsqueeze(-1)
    h = (boxes[..., 3] - boxes[..., 1]).unsqueeze(-1)
    grow = torch.cat([-padding * w, -padding * h, padding * w, padding * h], dim=-1)
    padded = boxes + grow
    nxt = torch.cat([padded[:, 1:], padded[:, -1:]], dim=1)
    # A missing next box leaves the current one as it is instead of spreading NaN backwards.
    nxt = torch.where(torch.isnan(nxt), padded, nxt)
    return alpha * padded + (1 - alpha) * nxt


def lower_face_token_mask(
    boxes: torch.Tensor, grid_h: int, grid_w: int, kind: str = "enclosing", padding: float = 0.1, alpha: float = 0.75
) -> torch.Tensor:
    """The V2V lip mask of the trainer and the sampler: lower-face boxes, optionally adaptive, per latent frame.

    Args:
        boxes: Lower-face boxes per video frame ``[B, F, 4]`` (x0, y0, x1, y1 pixels).
        grid_h: Latent rows.
        grid_w: Latent columns.
        kind: ``"enclosing"`` (the boxes as they are) or ``"adaptive"`` (:func:`adaptive_boxes`).
        padding: Adaptive mask padding.
        alpha: Adaptive mask smoothing weight.

    Returns:
        ``[B, T, grid_h, grid_w]`` bool.
    """
    if kind == "adaptive":
        boxes = adaptive_boxes(boxes, padding, alpha)
    elif kind != "enclosing":
        raise ValueError(f"mask kind {kind!r}: expected 'enclosing' or 'adaptive'")
    return face_token_mask(boxes, grid_h, grid_w)
