"""Gradient clipping that touches only the AdamW side of a ``MuonAdamW``.

Why not clip Muon gradients: Muon feeds its momentum buffer into a Newton–Schulz orthogonalisation
whose output has (approximately) unit singular values whatever the gradient's scale, so the step size is
set by the learning rate alone and a gradient spike cannot blow up the update. Clipping a Muon gradient
would therefore not bound anything; it would only rescale that step's contribution to the momentum EMA
relative to the other steps (and, with a *global* norm, let one exploding AdamW tensor shrink every
Muon matrix's gradient). AdamW's update, in contrast, does scale with the gradient through its moment
estimates, so clipping bounds it as usual.
"""

import torch
from torch.optim import Optimizer

from trainer.optim.hybrid import ADAMW


def _unwrap(optimizer: Optimizer) -> Optimizer:
    # Lightning hands hooks a LightningOptimizer that proxies the real one through `.optimizer`.
    inner = getattr(optimizer, "optimizer", None)
    return inner if isinstance(inner, Optimizer) else optimizer


def adamw_params_with_grad(optimizer: Optimizer) -> list[torch.Tensor]:
    """Parameters of the AdamW groups (untagged groups count as AdamW) that have a gradient."""
    optimizer = _unwrap(optimizer)
    return [
        p
        for group in optimizer.param_groups
        if group.get("optimizer", ADAMW) == ADAMW
        for p in group["params"]
        if p.grad is not None
    ]


def clip_adamw_grad_norm(
    optimizer: Optimizer, max_norm: float | None, norm_type: float = 2.0, foreach: bool | None = None
) -> torch.Tensor:
    """Clip the global gradient norm of the AdamW parameters in place; leave Muon gradients alone.

    Args:
        optimizer: a ``MuonAdamW`` (or LightningOptimizer wrapping one; a plain optimizer has all of its
            groups clipped).
        max_norm: maximum total norm; ``None`` only measures (for logging) and clips nothing.
        norm_type: p of the p-norm (``inf`` for the max norm).
        foreach: passed to torch's clipping kernels.

    Returns:
        The total norm of the AdamW gradients *before* clipping, a 0-dim tensor (0 when there are none).
    """
    params = adamw_params_with_grad(optimizer)
    if not params:
        return torch.zeros(())
    if max_norm is None:
        return torch.nn.utils.get_total_norm([p.grad for p in params], norm_type, foreach=foreach)
    return torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type, foreach=foreach)
