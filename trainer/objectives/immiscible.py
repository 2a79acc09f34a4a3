"""Immiscible diffusion with KNN noise selection (Li et al., used by EditYourself §4.1 with k = 4).

Each sample draws ``k`` noise candidates and keeps the one nearest to its clean latents over the tokens
that will be noised, which reduces the mixing of diffusion trajectories between samples. The target
and the timestep are unchanged: the kept candidate is simply the ``ε`` of Eq. 5.
"""

from __future__ import annotations

import torch


def knn_noise(
    x0: torch.Tensor, mask: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``k`` Gaussian candidates per sample and keep the nearest to ``x0``.

    Args:
        x0: Clean tokens ``[B, N, C]``.
        mask: ``M`` ``[B, N]``; the distance runs over masked tokens only.
        k: Candidates per sample (1 = plain Gaussian noise).
        generator: RNG on the device of ``x0``.

    Returns:
        ``(noise [B, N, C] in x0's dtype, chosen index [B])``.
    """
    bsz = x0.shape[0]
    cand = torch.randn((k, *x0.shape), generator=generator, device=x0.device, dtype=torch.float32)
    m = mask.to(torch.float32)[None, ..., None]
    # fp32 distances: with 10^5 tokens x 128 channels, bf16 sums cannot tell candidates apart.
    dist = ((cand - x0.float()[None]) * m).pow(2).sum(dim=(2, 3))  # [k, B]
    choice = dist.argmin(dim=0)
    noise = cand[choice, torch.arange(bsz, device=x0.device)]
    return noise.to(x0.dtype), choice
