"""Contrastive flow matching (Stoica et al., used by EditYourself §4.1 with λ = 0.05).

``L = MSE(v̂_i, ε_i − x0_i) − λ · MSE(v̂_i, ε_j − x0_j)`` with ``j ≠ i`` another sample of the batch
(other audio), both terms restricted to sample ``i``'s mask. Pushing each prediction away from
another sample's flow makes flows of different audio distinguishable.
"""

from __future__ import annotations

import torch

from trainer.objectives.flow_matching import masked_sq_error


def negative_targets(target: torch.Tensor) -> torch.Tensor:
    """Pair each sample with the next one of the batch (``j = i + 1 mod B``): ``[B, N, C]``."""
    return torch.roll(target, shifts=1, dims=0)


def contrastive_sq_error(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    negatives: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample contrastive flow-matching error sums.

    Args:
        pred: ``v̂`` ``[B, N, C]``.
        target: Positive targets ``ε_i − x0_i`` ``[B, N, C]``.
        mask: ``M_i`` ``[B, N]``.
        lam: ``λ``.
        negatives: Negative targets ``ε_j − x0_j`` ``[B, N, C]``; by default the batch rolled by one.
            ``None`` with ``B = 1`` means no negative exists and the term is zero.

    Returns:
        ``(total [B], positive [B], count [B])`` with ``total = positive − λ·negative``; divide the batch
        sums by the count sum for the loss.
    """
    pos, count = masked_sq_error(pred, target, mask)
    if negatives is None:
        if pred.shape[0] < 2 or lam == 0:
            return pos, pos, count
        negatives = negative_targets(target)
    neg, _ = masked_sq_error(pred, negatives, mask)
    return pos - lam * neg, pos, count
