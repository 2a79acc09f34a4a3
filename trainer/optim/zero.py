"""Muon + AdamW under DeepSpeed ZeRO-2/3, with talkdit's routing, learning rates and AdamW-only clipping.

Under ZeRO the optimizer only ever sees flat fp32 partitions, which no longer have a matrix shape, so
Muon cannot run there. DeepSpeed (>= 0.18) therefore orthogonalises inside ZeRO, where each gradient is
still whole: every parameter tagged ``use_muon`` gets the Muon step (momentum, Nesterov, 5 Newton–Schulz
iterations, ``lr × sqrt(max(1, out/in))``) on its full gradient before it is partitioned (ZeRO-2), or on
the gathered gradient (ZeRO-3). That is torch's Muon with ``adjust_lr_fn="original"`` (validation
insists on those settings). What DeepSpeed would otherwise decide is fixed here:

- which tensors are Muon matrices: talkdit's explicit routing (:mod:`trainer.optim.routing`), not
  DeepSpeed's "every ≥2-D tensor but embeddings" rule; modulation tables, projections in/out and other
  non-hidden matrices stay on AdamW;
- the learning rates: one group per kind with ``lr_muon`` and ``lr_adam``; the shared ``LambdaLR``
  schedules both, and the DeepSpeed JSON carries no scheduler;
- clipping: DeepSpeed's (global, over the Muon update too) is disabled; :func:`clip_zero_adamw_grad_norm`
  measures the AdamW parameters' gradient norm across ranks after backward and the optimizer scales only
  the AdamW partitions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from trainer.optim.config import OptimConfig, as_optim_config
from trainer.optim.hybrid import ADAMW, MUON
from trainer.optim.routing import route_parameters
from trainer.optim.schedule import build_scheduler


def _deepspeed_muon_class():
    from deepspeed.runtime.zero.muon.muon_optimizer import MuonWithAuxAdam

    return MuonWithAuxAdam


def zero_muon_adamw(groups: list[dict[str, Any]]):
    """Build the ZeRO optimizer over DeepSpeed-style param groups.

    The class derives from DeepSpeed's ``MuonWithAuxAdam`` and is created here, so that importing talkdit
    does not import DeepSpeed.
    """
    base = _deepspeed_muon_class()

    class ZeroMuonAdamW(base):
        """DeepSpeed's Muon-with-AdamW whose AdamW partitions are scaled by ``clip_coef`` before the step.

        DeepSpeed steps one parameter group at a time, so the clip coefficient is set once per step from
        outside (:func:`clip_zero_adamw_grad_norm`) and consumed here.
        """

        clip_coef: float = 1.0

        @torch.no_grad()
        def step(self, closure=None):
            if self.clip_coef != 1.0:
                for group in self.param_groups:
                    if not group["use_muon"]:
                        for p in group["params"]:
                            if p.grad is not None:
                                p.grad.mul_(self.clip_coef)
            return super().step(closure)

    return ZeroMuonAdamW(groups)


def build_zero_groups(model: nn.Module, cfg: OptimConfig) -> tuple[list, list[dict[str, Any]]]:
    """Routes and DeepSpeed param groups for ``model``'s trainable parameters.

    Also tags every parameter with ``use_muon``: DeepSpeed reads the tag on the parameter itself.
    """
    from trainer.optim import build_param_groups

    routes = route_parameters(model, cfg)
    if not routes:
        raise ValueError("build_zero_optimizer: the model has no trainable parameter (requires_grad=True)")
    groups = []
    for g in build_param_groups(model, routes, cfg):
        muon = g["optimizer"] == MUON
        named = list(g["params"])
        if muon:
            # DeepSpeed re-sorts Muon parameters by size (largest first); doing it here first keeps the
            # names aligned with the tensors (the sort is stable).
            named.sort(key=lambda item: item[1].size(), reverse=True)
        names = [n for n, _ in named]
        tensors = [p for _, p in named]
        for p in tensors:
            p.use_muon = muon
        common = {"name": g["name"], "optimizer": g["optimizer"], "param_names": names, "params": tensors}
        if muon:
            # "standard": the same bf16 quintic Newton–Schulz iteration as torch's Muon.
            groups.append(
                {
                    **common,
                    "use_muon": True,
                    "lr": g["lr"],
                    "momentum": g["momentum"],
                    "weight_decay": g["weight_decay"],
                    "ns_method": "standard",
                }
            )
        else:
            groups.append(
                {
                    **common,
                    "use_muon": False,
                    "lr": g["lr"],
                    "betas": tuple(g["betas"]),
                    "eps": g["eps"],
                    "weight_decay": g["weight_decay"],
                }
            )
    for p in model.parameters():
        if not p.requires_grad:
            p.use_muon = False
    return routes, groups


def build_zero_optimizer(model: nn.Module, cfg: OptimConfig):
    """The DeepSpeed optimizer and shared scheduler for ``model`` (see the module docstring).

    Returns:
        ``OptimizerBundle`` whose ``optimizer`` is a ``ZeroMuonAdamW``.
    """
    from trainer.optim import OptimizerBundle

    cfg = as_optim_config(cfg)
    routes, groups = build_zero_groups(model, cfg)
    optimizer = zero_muon_adamw(groups)
    return OptimizerBundle(optimizer=optimizer, scheduler=build_scheduler(optimizer, cfg), routes=routes, config=cfg)


def clip_zero_adamw_grad_norm(model: nn.Module, optimizer, max_norm: float | None) -> torch.Tensor:
    """Measure the AdamW parameters' gradient norm under ZeRO and set the optimizer's clip coefficient.

    Call after backward and before the DeepSpeed step. The full gradient of each AdamW parameter is
    assembled with DeepSpeed's ``safe_get_full_grad`` (a collective: every rank must call this).

    Args:
        model: The module whose parameters carry ``use_muon`` tags.
        optimizer: The ``ZeroMuonAdamW`` (or a wrapper exposing it as ``.optimizer``).
        max_norm: Maximum total norm; ``None`` only measures.

    Returns:
        The AdamW gradients' total L2 norm before clipping (0-dim tensor).
    """
    from deepspeed.utils import safe_get_full_grad

    inner = optimizer
    while not hasattr(inner, "clip_coef") and hasattr(inner, "optimizer"):
        inner = inner.optimizer
    total = None
    for p in model.parameters():
        if p.requires_grad and not getattr(p, "use_muon", False):
            grad = safe_get_full_grad(p)
            if grad is not None:
                sq = grad.detach().float().pow(2).sum()
                total = sq if total is None else total + sq
    norm = torch.zeros(()) if total is None else total.sqrt()
    coef = 1.0
    if max_norm is not None and math.isfinite(float(norm)):
        coef = min(1.0, max_norm / (float(norm) + 1e-6))  # torch.nn.utils.clip_grad_norm_'s rule
    inner.clip_coef = coef
    return norm


__all__ = ["ADAMW", "MUON", "build_zero_groups", "build_zero_optimizer", "clip_zero_adamw_grad_norm", "zero_muon_adamw"]
