"""Building the Muon + AdamW optimiser and its scheduler from routed parameters (see :mod:`trainer.optim`)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from trainer.optim.clipping import clip_adamw_grad_norm
from trainer.optim.config import OptimConfig, as_optim_config
from trainer.optim.hybrid import MuonAdamW
from trainer.optim.report import format_param_table
from trainer.optim.routing import ADAMW, MUON, ParamRoute, route_parameters
from trainer.optim.schedule import build_scheduler


@dataclass
class OptimizerBundle:
    """What ``build_optimizer`` returns.

    Attributes:
        optimizer: the ``MuonAdamW`` over every trainable parameter.
        scheduler: the shared-factor ``LambdaLR``; step it once per optimiser step.
        routes: per-parameter routing decisions, in ``named_parameters`` order.
        config: the validated config the bundle was built from.
    """

    optimizer: MuonAdamW
    scheduler: LambdaLR
    routes: list[ParamRoute]
    config: OptimConfig

    def table(self) -> str:
        """The start-up table (see ``format_param_table``)."""
        return format_param_table(self.routes, self.optimizer)

    def clip_gradients(self) -> torch.Tensor:
        """Clip AdamW gradients to ``config.grad_clip_norm`` (measure only when it is ``None``)."""
        return clip_adamw_grad_norm(self.optimizer, self.config.grad_clip_norm)

    def lightning_config(self) -> dict[str, Any]:
        """The ``configure_optimizers`` return value, with the scheduler stepped every optimiser step."""
        return {
            "optimizer": self.optimizer,
            "lr_scheduler": {"scheduler": self.scheduler, "interval": "step", "frequency": 1, "name": "lr"},
        }


def build_param_groups(model: nn.Module, routes: list[ParamRoute], cfg: OptimConfig) -> list[dict[str, Any]]:
    """Turn routes into ``MuonAdamW`` group dicts (named parameters; empty groups dropped).

    Groups: ``muon`` (lr = ``lr_muon``); ``adamw`` (lr = ``lr_adam``) and, when ``adam_weight_decay > 0``,
    ``adamw_no_decay`` holding biases, norms, embeddings, position tensors and modulation tables.

    Args:
        model: the module the routes were computed on.
        routes: ``route_parameters(model, cfg)``.
        cfg: a validated config.
    """
    params = dict(model.named_parameters())
    split_decay = cfg.adam_weight_decay > 0
    buckets: dict[str, list[tuple[str, nn.Parameter]]] = {"muon": [], "adamw": [], "adamw_no_decay": []}
    for route in routes:
        if route.optimizer == MUON:
            key = "muon"
        elif split_decay and not route.decay:
            key = "adamw_no_decay"
        else:
            key = "adamw"
        buckets[key].append((route.name, params[route.name]))
    groups = []
    if buckets["muon"]:
        groups.append(
            {
                "name": "muon",
                "optimizer": MUON,
                "params": buckets["muon"],
                "lr": cfg.lr_muon,
                "weight_decay": cfg.muon_weight_decay,
                "momentum": cfg.muon_momentum,
                "nesterov": cfg.muon_nesterov,
                "ns_steps": cfg.muon_ns_steps,
                "adjust_lr_fn": cfg.muon_adjust_lr,
            }
        )
    for key, wd in (("adamw", cfg.adam_weight_decay), ("adamw_no_decay", 0.0)):
        if buckets[key]:
            groups.append(
                {
                    "name": key,
                    "optimizer": ADAMW,
                    "params": buckets[key],
                    "lr": cfg.lr_adam,
                    "betas": tuple(cfg.adam_betas),
                    "eps": cfg.adam_eps,
                    "weight_decay": wd,
                }
            )
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig | Mapping[str, Any]) -> OptimizerBundle:
    """Route ``model``'s trainable parameters and build the optimizer and its scheduler.

    Args:
        model: the module being trained (frozen parameters are ignored).
        cfg: an ``OptimConfig``, a (structured) ``DictConfig`` or a dict of its fields.

    Returns:
        ``OptimizerBundle(optimizer, scheduler, routes, config)``.

    Raises:
        ValueError: invalid config, or no trainable parameter.
    """
    cfg = as_optim_config(cfg)
    routes = route_parameters(model, cfg)
    if not routes:
        raise ValueError("build_optimizer: the model has no trainable parameter (requires_grad=True)")
    groups = build_param_groups(model, routes, cfg)
    optimizer = MuonAdamW(groups)
    scheduler = build_scheduler(optimizer, cfg)
    return OptimizerBundle(optimizer=optimizer, scheduler=scheduler, routes=routes, config=cfg)
