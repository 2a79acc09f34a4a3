import re

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from trainer.optim import DEFAULT_ADAMW_PATTERNS, OptimConfig, as_optim_config, build_optimizer


def test_defaults_follow_the_paper():
    cfg = OptimConfig().validate()
    assert cfg.lr_adam == 1e-5 and cfg.lr_muon == pytest.approx(1e-3)
    assert cfg.name == "muon_adamw" and cfg.muon_adjust_lr == "original"
    assert list(cfg.adamw_patterns) == list(DEFAULT_ADAMW_PATTERNS)
    assert OptimConfig(lr_adam=1e-4).lr_muon == pytest.approx(1e-2)  # stage 2


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"name": "sgd"}, "name"),
        ({"lr_adam": 0.0}, "lr_adam"),
        ({"lr_adam": float("nan")}, "lr_adam"),
        ({"lr_muon_ratio": -1.0}, "lr_muon_ratio"),
        ({"adam_betas": [0.9]}, "adam_betas"),
        ({"adam_betas": [0.9, 1.0]}, "adam_betas[1]"),
        ({"adam_betas": [-0.1, 0.99]}, "adam_betas[0]"),
        ({"adam_eps": 0.0}, "adam_eps"),
        ({"adam_weight_decay": -0.1}, "adam_weight_decay"),
        ({"muon_weight_decay": -1e-3}, "muon_weight_decay"),
        ({"muon_momentum": 1.0}, "muon_momentum"),
        ({"muon_ns_steps": 0}, "muon_ns_steps"),
        ({"muon_ns_steps": 100}, "muon_ns_steps"),
        ({"muon_adjust_lr": "keller"}, "muon_adjust_lr"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"schedule": "step"}, "schedule"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
        ({"schedule": "cosine"}, "total_steps"),
        ({"schedule": "linear", "total_steps": 10, "warmup_steps": 10}, "total_steps"),
        ({"total_steps": 0}, "total_steps"),
        ({"grad_clip_norm": 0.0}, "grad_clip_norm"),
        ({"adamw_patterns": ["ok", "(unclosed"]}, "adamw_patterns[1]"),
        ({"lora_optimizer": "sgd"}, "lora_optimizer"),
    ],
)
def test_validation_names_the_key(overrides, key):
    cfg = OptimConfig(**overrides)
    with pytest.raises(ValueError, match=re.escape(f"optim.{key}")):
        cfg.validate()
    with pytest.raises(ValueError, match=re.escape(f"optim.{key}")):
        build_optimizer(nn.Linear(2, 2), cfg)


def test_match_rms_with_100x_warns():
    with pytest.warns(UserWarning, match="match_rms_adamw"):
        OptimConfig(muon_adjust_lr="match_rms_adamw").validate()
    OptimConfig(muon_adjust_lr="match_rms_adamw", lr_muon_ratio=1.0).validate()


def test_hydra_structured_config_and_mappings():
    node = OmegaConf.merge(OmegaConf.structured(OptimConfig), {"lr_adam": 1e-4, "schedule": "cosine"})
    node.total_steps = 100
    cfg = as_optim_config(node)
    assert isinstance(cfg, OptimConfig) and cfg.lr_muon == pytest.approx(1e-2)
    assert isinstance(cfg.adam_betas, list)
    with pytest.raises(Exception, match="warmup_steps"):
        node.warmup_steps = "many"  # typed fields reject bad types at override time
    plain = as_optim_config(OmegaConf.create({"lr_adam": 2e-5, "adam_betas": [0.9, 0.95]}))
    assert plain.lr_adam == 2e-5 and plain.adam_betas == [0.9, 0.95]
    assert as_optim_config({"name": "adamw"}).name == "adamw"
    with pytest.raises(ValueError, match="unknown key.*lr_muon"):
        as_optim_config({"lr_muon": 1e-3})
    bundle = build_optimizer(nn.Linear(3, 3), node)
    assert bundle.config.total_steps == 100


def test_no_trainable_parameter_is_an_error():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        build_optimizer(model, OptimConfig())
    assert torch.is_grad_enabled()
