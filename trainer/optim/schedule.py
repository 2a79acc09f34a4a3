"""Learning-rate schedule: linear warm-up from 0, then constant, cosine or linear decay.

One multiplicative factor is applied to every param group's base lr, so ``lr_muon / lr_adam`` stays the
configured ratio at every step (the paper scales both together between stages; a schedule that bent one
and not the other would silently change the recipe).
"""

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from trainer.optim.config import OptimConfig


def lr_factor_fn(cfg: OptimConfig) -> Callable[[int], float]:
    """The lr multiplier as a function of the number of optimiser steps taken.

    ``factor(s) = s / warmup_steps`` for ``s < warmup_steps`` (so the very first step runs at lr 0, as in
    the usual ``get_*_schedule_with_warmup`` helpers); then 1 for ``constant``, or for ``cosine`` /
    ``linear`` a decay from 1 at ``warmup_steps`` to ``min_lr_ratio`` at ``total_steps``, held after.

    Args:
        cfg: a validated config (``warmup_steps``, ``schedule``, ``min_lr_ratio``, ``total_steps``).

    Returns:
        A plain function (not a callable object: ``LambdaLR.state_dict`` then stores no copy of it, so a
        resumed run follows the *current* config's schedule from the restored step).
    """
    warmup = cfg.warmup_steps
    schedule = cfg.schedule
    floor = cfg.min_lr_ratio
    total = cfg.total_steps

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / (total - warmup))
        if schedule == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return floor + (1.0 - floor) * (1.0 - progress)

    return factor


def build_scheduler(optimizer: Optimizer, cfg: OptimConfig) -> LambdaLR:
    """Wrap ``optimizer`` in a ``LambdaLR`` with one shared factor for all groups.

    Step it once per optimiser step (Lightning: ``"interval": "step"``). Building it sets each group's
    ``initial_lr`` to its current ``lr`` and the lr to ``base × factor(0)``.

    Args:
        optimizer: usually a ``MuonAdamW``; any optimizer works.
        cfg: the optimiser config; validated here.

    Returns:
        The scheduler.
    """
    cfg.validate()
    return LambdaLR(optimizer, lr_lambda=lr_factor_fn(cfg))
