"""Which latent tokens a sampling mode generates: the mask ``M`` of T2V, I2V and V2V (lip, face, head).

V2V lip uses the trainer's own lower-face mask (:func:`trainer.model.masks.lower_face_token_mask`, with
the run's ``data.mask`` settings) so inference regenerates exactly the region training taught; face and
head masks widen it to the whole face box and to the face box grown around its centre (head and hair,
for head-motion edits). Every mode goes through :func:`trainer.objectives.flow_matching.noise_mask`.
"""

from __future__ import annotations

import torch

from eval.sampler.config import V2V_MASKS
from trainer.model.masks import face_token_mask, lower_face_token_mask
from trainer.objectives.flow_matching import noise_mask

MODES = ("t2v", "i2v", "v2v")


def head_boxes(face_boxes: torch.Tensor, scale: float, height: int, width: int) -> torch.Tensor:
    """Face boxes grown by ``scale`` around their centres and clipped to the frame.

    Args:
        face_boxes: ``[B, F, 4]`` (x0, y0, x1, y1 pixels; NaN rows stay NaN).
        scale: Growth factor of width and height (> 1).
        height: Frame height in pixels.
        width: Frame width in pixels.

    Returns:
        ``[B, F, 4]``.
    """
    cx = (face_boxes[..., 0] + face_boxes[..., 2]) / 2
    cy = (face_boxes[..., 1] + face_boxes[..., 3]) / 2
    hw = (face_boxes[..., 2] - face_boxes[..., 0]) * scale / 2
    hh = (face_boxes[..., 3] - face_boxes[..., 1]) * scale / 2
    return torch.stack(
        [(cx - hw).clamp(0, width), (cy - hh).clamp(0, height), (cx + hw).clamp(0, width), (cy + hh).clamp(0, height)],
        dim=-1,
    )


def mode_mask(
    mode: str,
    grid: tuple[int, int, int],
    batch_size: int,
    v2v_mask: str = "lip",
    lower_face_boxes: torch.Tensor | None = None,
    face_boxes: torch.Tensor | None = None,
    mask_kind: str = "enclosing",
    mask_padding: float = 0.1,
    mask_alpha: float = 0.75,
    head_scale: float = 1.6,
    spatial_compression: int = 32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The mask ``M`` of a sampling mode.

    Args:
        mode: ``t2v`` (everything generated), ``i2v`` (everything but latent frame 0) or ``v2v``.
        grid: ``(T, H, W)`` latent frames, rows, columns.
        batch_size: ``B``.
        v2v_mask: ``lip`` (lower face, as in training), ``face`` or ``head``.
        lower_face_boxes: ``[B, F, 4]`` pixel boxes per video frame (``lip``).
        face_boxes: ``[B, F, 4]`` pixel boxes per video frame (``face``, ``head``).
        mask_kind: The training run's ``data.mask`` (``enclosing`` or ``adaptive``).
        mask_padding: The training run's ``data.mask_padding``.
        mask_alpha: The training run's ``data.mask_alpha``.
        head_scale: Growth of the face box for ``head``.
        spatial_compression: Pixels per token side.
        device: Output device.

    Returns:
        ``[B, T, H, W]`` float32 in {0, 1}.

    Raises:
        ValueError: Unknown mode or mask, or the boxes the mask needs are missing.
    """
    frames, grid_h, grid_w = grid
    ones = torch.ones(batch_size, frames, grid_h, grid_w, dtype=torch.bool, device=device)
    yes = torch.ones(batch_size, dtype=torch.bool, device=device)
    no = ~yes
    if mode == "t2v":
        return noise_mask(ones, no, no)
    if mode == "i2v":
        return noise_mask(ones, no, yes)
    if mode != "v2v":
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if v2v_mask == "lip":
        if lower_face_boxes is None:
            raise ValueError("v2v_mask 'lip' needs lower_face_boxes (the shard's lower_face_boxes.npy)")
        face = lower_face_token_mask(lower_face_boxes.to(device), grid_h, grid_w, mask_kind, mask_padding, mask_alpha)
    elif v2v_mask in ("face", "head"):
        if face_boxes is None:
            raise ValueError(f"v2v_mask {v2v_mask!r} needs face_boxes (the shard's face_boxes.npy)")
        boxes = face_boxes.to(device)
        if v2v_mask == "head":
            boxes = head_boxes(boxes, head_scale, grid_h * spatial_compression, grid_w * spatial_compression)
        face = face_token_mask(boxes, grid_h, grid_w, spatial_compression)
    else:
        raise ValueError(f"v2v_mask {v2v_mask!r}: expected one of {', '.join(V2V_MASKS)}")
    return noise_mask(face, yes, no)
