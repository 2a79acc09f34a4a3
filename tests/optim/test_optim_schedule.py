import math

import pytest
import torch
from torch import nn

from trainer.optim import OptimConfig, build_optimizer, lr_factor_fn


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 6))


def _expected_factor(step, warmup, total, floor, kind):
    if step < warmup:
        return step / warmup
    if kind == "constant":
        return 1.0
    p = min(1.0, (step - warmup) / (total - warmup))
    if kind == "cosine":
        return floor + (1 - floor) * (1 + math.cos(math.pi * p)) / 2
    return floor + (1 - floor) * (1 - p)


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_ratio_and_values_every_step(kind):
    cfg = OptimConfig(
        lr_adam=1e-5,
        warmup_steps=5,
        schedule=kind,
        total_steps=20 if kind != "constant" else None,
        min_lr_ratio=0.1,
    )
    model = _model()
    bundle = build_optimizer(model, cfg)
    groups = {g["optimizer"]: g for g in bundle.optimizer.param_groups}
    assert groups["muon"]["initial_lr"] == pytest.approx(100 * groups["adamw"]["initial_lr"], rel=1e-15)
    seen = []
    for step in range(26):
        lr_muon, lr_adam = groups["muon"]["lr"], groups["adamw"]["lr"]
        factor = _expected_factor(step, 5, 20, 0.1, kind)
        assert lr_adam == pytest.approx(1e-5 * factor, rel=1e-12, abs=1e-20), step
        if step == 0:
            assert lr_muon == 0.0 and lr_adam == 0.0
        else:
            assert lr_muon / lr_adam == pytest.approx(100.0, rel=1e-12), step
        seen.append(lr_adam)
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        bundle.optimizer.step()
        bundle.scheduler.step()
    assert max(seen) == pytest.approx(1e-5)
    if kind != "constant":
        assert seen[20] == pytest.approx(1e-6) and seen[25] == pytest.approx(1e-6)
        assert all(a >= b for a, b in zip(seen[5:], seen[6:]))  # monotone decay after warm-up


def test_no_warmup_starts_at_base_lr():
    bundle = build_optimizer(_model(), OptimConfig(lr_adam=1e-4))
    lrs = {g["optimizer"]: g["lr"] for g in bundle.optimizer.param_groups}
    assert lrs == {"muon": pytest.approx(1e-2), "adamw": pytest.approx(1e-4)}


def test_factor_fn_is_a_plain_function_not_saved_in_state_dict():
    cfg = OptimConfig(schedule="cosine", total_steps=10)
    bundle = build_optimizer(_model(), cfg)
    assert set(bundle.scheduler.state_dict()["lr_lambdas"]) == {None}
    assert lr_factor_fn(cfg)(10) == 0.0 and lr_factor_fn(cfg)(0) == 1.0
