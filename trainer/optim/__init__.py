"""Optimisers for talkdit: Muon for hidden 2-D matrices, AdamW for everything else (paper §4.1).

Typical use in a ``LightningModule``::

    def configure_optimizers(self):
        bundle = build_optimizer(self.model, self.cfg.optim)
        log.info(bundle.table())
        return bundle.lightning_config()

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip_adamw_grad_norm(optimizer, self.cfg.optim.grad_clip_norm)  # never Trainer(gradient_clip_val=...)
"""

import importlib

from trainer.optim.config import DEFAULT_ADAMW_PATTERNS, OptimConfig, as_optim_config

# Name -> submodule. The torch-dependent parts load on first use, so that the config schema (which imports
# trainer.optim.config) composes without importing torch: `--help` and config errors stay fast.
_LAZY = {
    "ADAMW": "routing",
    "MUON": "routing",
    "MuonAdamW": "hybrid",
    "OptimizerBundle": "build",
    "ParamRoute": "routing",
    "adamw_params_with_grad": "clipping",
    "build_optimizer": "build",
    "build_param_groups": "build",
    "build_scheduler": "schedule",
    "clip_adamw_grad_norm": "clipping",
    "format_param_table": "report",
    "lr_factor_fn": "schedule",
    "muon_lr_scale": "report",
    "route_parameters": "routing",
    "routes_by_optimizer": "routing",
}

__all__ = [
    "ADAMW",
    "DEFAULT_ADAMW_PATTERNS",
    "MUON",
    "MuonAdamW",
    "OptimConfig",
    "OptimizerBundle",
    "ParamRoute",
    "adamw_params_with_grad",
    "as_optim_config",
    "build_optimizer",
    "build_param_groups",
    "build_scheduler",
    "clip_adamw_grad_norm",
    "format_param_table",
    "lr_factor_fn",
    "muon_lr_scale",
    "route_parameters",
    "routes_by_optimizer",
]


def __getattr__(name: str):
    """Import a torch-dependent name from its submodule on first access (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"trainer.optim.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
