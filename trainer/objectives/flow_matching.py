"""Masked flow matching (EditYourself Eq. 5 and Eq. 8), shared by the trainer and the sampler.

``x_t = M ⊙ [(1 − t) x0 + t ε] + (1 − M) ⊙ x0`` (Eq. 5) with a per-token flow time ``t·M`` — tokens
outside the mask and the clean first frame are clean conditioning at time 0. The loss (Eq. 8) compares
``M · v_θ`` with ``M ⊙ (ε − x0)`` and is normalised by the number of masked elements over the whole
batch (and, under sequence parallelism, over all ranks), returned as a sum and a count for that reason.
"""

from __future__ import annotations

import torch


def noise_mask(face_mask: torch.Tensor, v2v: torch.Tensor, first_frame: torch.Tensor) -> torch.Tensor:
    """The mask ``M`` of the tokens to noise, predict and train on.

    Args:
        face_mask: Lower-face mask per latent frame ``[B, T, H, W]`` (bool).
        v2v: ``[B]`` bool; off sets ``M = 1`` (unconstrained generation).
        first_frame: ``[B]`` bool; on keeps latent frame 0 clean.

    Returns:
        ``[B, T, H, W]`` float32 in {0, 1}.
    """
    m = torch.where(v2v[:, None, None, None], face_mask, torch.ones_like(face_mask)).to(torch.float32)
    keep_first = first_frame[:, None, None].to(torch.float32)
    m[:, 0] = m[:, 0] * (1.0 - keep_first)
    return m


def noise_tokens(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 on tokens.

    Args:
        x0: Clean tokens ``[B, N, C]``.
        noise: ``ε`` ``[B, N, C]``.
        t: Flow time per sample ``[B]``.
        mask: ``M`` per token ``[B, N]`` in {0, 1}.

    Returns:
        ``(x_t [B, N, C], per-token time t·M [B, N])``. Unmasked tokens equal ``x0`` bit for bit.
    """
    tt = t.to(x0.dtype)[:, None, None]
    noised = (1 - tt) * x0 + tt * noise
    x_t = torch.where(mask[..., None] > 0, noised, x0)
    return x_t, t[:, None].to(torch.float32) * mask.to(torch.float32)


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Flow-matching target ``ε − x0``."""
    return noise - x0


def masked_sq_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample masked squared error and element count (Eq. 8 before normalisation).

    Args:
        pred: ``v_θ`` ``[B, N, C]``.
        target: ``ε − x0`` ``[B, N, C]``.
        mask: ``M`` ``[B, N]``.

    Returns:
        ``(sum [B], count [B])``: ``Σ ‖M·pred − M⊙target‖²`` and ``C · Σ M`` per sample (float32).
    """
    m = mask.to(torch.float32)[..., None]
    diff = (pred.float() - target.float()) * m
    return diff.pow(2).sum(dim=(1, 2)), m.sum(dim=(1, 2)) * pred.shape[-1]


def normalized_loss(err_sum: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Eq. 8: total masked squared error over the total masked element count (scalar)."""
    return err_sum.sum() / count.sum().clamp(min=1.0)
