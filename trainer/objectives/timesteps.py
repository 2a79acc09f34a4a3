"""Flow times biased towards high noise (EditYourself §3.2).

``t = sigmoid(N(loc, scale))`` — a logit-normal ("shifted log-normal") law. With ``loc = 2.05`` and
``scale = 1`` about 92% of draws fall in [0.60, 0.98], so the mouth is rarely easy enough to recover
without listening to the audio.
"""

from __future__ import annotations

import math

import torch


def sample_timesteps(
    batch_size: int,
    loc: float = 2.05,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw one flow time per sample.

    Args:
        batch_size: Number of draws ``B``.
        loc: Mean of the normal before the sigmoid.
        scale: Standard deviation of the normal before the sigmoid.
        generator: RNG (its device must be ``device``).
        device: Output device.

    Returns:
        ``[B]`` float32 in (0, 1).
    """
    z = torch.randn(batch_size, generator=generator, device=device, dtype=torch.float32)
    return torch.sigmoid(loc + scale * z)


def sampling_times(num_steps: int, loc: float = 2.05) -> torch.Tensor:
    """Flow times of an Euler sampler, from pure noise (1) to clean (0), shifted like the training law.

    ``t_i = e^loc s_i / (e^loc s_i + 1 − s_i)`` on a uniform grid ``s_i = 1 − i / num_steps``: the
    time shift whose median matches ``sigmoid(N(loc, ·))`` (the same form as LTX's shifted flow-matching
    schedule with ``shift = e^loc``), so sampling spends its steps where training put its timesteps.

    Args:
        num_steps: Euler steps (40 in the paper).
        loc: The training law's location (``objective.timestep_loc``).

    Returns:
        ``[num_steps + 1]`` float64, strictly decreasing from 1 to 0.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps}: expected >= 1")
    s = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    shift = math.exp(loc)
    t = shift * s / (shift * s + 1 - s)
    t[0], t[-1] = 1.0, 0.0  # exact ends: the first step starts from pure noise, the last lands on t = 0
    return t


def time_bins(t: torch.Tensor, edges: list[float]) -> torch.Tensor:
    """Which flow-time bin each draw falls in, for the per-``t`` training loss.

    Bin ``i`` is ``[edges[i], edges[i+1])``; the last bin also holds ``t = edges[-1]``.

    Args:
        t: Flow times ``[B]``.
        edges: Increasing bin edges (``K + 1`` values for ``K`` bins).

    Returns:
        ``[B]`` int64 bin index, ``-1`` for a time outside ``[edges[0], edges[-1]]``.
    """
    e = torch.tensor(edges, dtype=t.dtype, device=t.device)
    idx = torch.bucketize(t, e, right=True) - 1
    idx = torch.where(t == e[-1], len(edges) - 2, idx)
    return torch.where((idx >= 0) & (idx < len(edges) - 1), idx, -1)


def time_bin_label(lo: float, hi: float) -> str:
    """Metric suffix of a flow-time bin, e.g. ``t0.25-0.5`` (numbers as ``val/loss_t<q>`` writes them)."""
    return f"t{lo:g}-{hi:g}"


class TimeBinLosses:
    """Per flow-time bin, the mean flow-matching loss of every sample since the last logged row.

    One sample per rank and step puts a single ``t`` in a step; averaging every step since the last row
    (this rank's samples) gives each logged value more than one sample.

    Args:
        edges: Increasing bin edges (``loop.loss_t_bins``).
    """

    def __init__(self, edges: list[float]):
        self.edges = list(edges)
        self._window: torch.Tensor | None = None  # [K, 2]: (sum of losses, samples) per bin

    def add(self, per_sample: torch.Tensor, flow_time: torch.Tensor) -> None:
        """Add a step's per-sample losses ``[B]`` at their flow times ``[B]`` (on the device, without a sync)."""
        if self._window is None:
            self._window = torch.zeros(len(self.edges) - 1, 2, device=per_sample.device)
        idx = time_bins(flow_time.to(per_sample.device), self.edges)
        keep = idx >= 0
        self._window[:, 0].index_add_(0, idx[keep], per_sample[keep].float())
        self._window[:, 1].index_add_(0, idx[keep], torch.ones_like(per_sample[keep], dtype=torch.float32))

    def pop(self) -> dict[str, float]:
        """``{"loss_t<lo>-<hi>": mean}`` for every bin that received a sample since the last call, then reset."""
        if self._window is None:
            return {}
        window = self._window.tolist()
        self._window.zero_()
        e = self.edges
        return {f"loss_{time_bin_label(e[i], e[i + 1])}": total / n for i, (total, n) in enumerate(window) if n > 0}
