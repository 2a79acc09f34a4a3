import copy

import pytest
import torch
from torch import nn

from trainer.optim import OptimConfig, build_optimizer, clip_adamw_grad_norm


def _fill(model, seed, muon_scale=1.0, adam_scale=1.0, routes=None):
    gen = torch.Generator().manual_seed(seed)
    kinds = {r.name: r.optimizer for r in routes}
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = muon_scale if kinds[name] == "muon" else adam_scale
            p.grad = torch.randn(p.shape, generator=gen) * scale


def test_clip_only_touches_adamw(ltx_stage1):
    bundle = build_optimizer(ltx_stage1, OptimConfig())
    _fill(ltx_stage1, 0, muon_scale=50.0, adam_scale=50.0, routes=bundle.routes)
    muon_before = {n: p.grad.clone() for n, p in ltx_stage1.named_parameters() if p.grad is not None}
    adam_params = [p for g in bundle.optimizer.param_groups if g["optimizer"] == "adamw" for p in g["params"]]
    pre = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in adam_params]))
    assert pre > 10

    returned = clip_adamw_grad_norm(bundle.optimizer, 1.0)
    assert returned.item() == pytest.approx(pre.item(), rel=1e-6)
    post = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in adam_params]))
    assert post.item() == pytest.approx(1.0, rel=1e-5)
    for group in bundle.optimizer.param_groups:
        if group["optimizer"] == "muon":
            for name, p in zip(group["param_names"], group["params"]):
                assert torch.equal(p.grad, muon_before[name]), name

    # Below the threshold nothing changes; None only measures.
    grads = [p.grad.clone() for p in adam_params]
    assert clip_adamw_grad_norm(bundle.optimizer, 10.0).item() == pytest.approx(1.0, rel=1e-5)
    assert clip_adamw_grad_norm(bundle.optimizer, None).item() == pytest.approx(1.0, rel=1e-5)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, adam_params))
    assert bundle.clip_gradients().item() == pytest.approx(1.0, rel=1e-5)  # cfg.grad_clip_norm = 1.0


def test_clip_with_no_adamw_grads():
    model = nn.Linear(4, 4, bias=False)
    bundle = build_optimizer(model, OptimConfig(adamw_patterns=[]))
    model.weight.grad = torch.ones(4, 4) * 1e3
    assert clip_adamw_grad_norm(bundle.optimizer, 1.0).item() == 0.0
    assert torch.equal(model.weight.grad, torch.ones(4, 4) * 1e3)


def test_huge_muon_gradient_gives_same_size_update():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 24, bias=False), nn.Linear(24, 16, bias=False))
    updates = []
    for scale in (1e-3, 1.0, 1e4):
        model = copy.deepcopy(base)
        bundle = build_optimizer(model, OptimConfig(lr_adam=1e-3, adamw_patterns=[]))
        gen = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen) * scale
        clip_adamw_grad_norm(bundle.optimizer, 1.0)  # must not shrink Muon gradients
        bundle.optimizer.step()
        updates.append([(p - q).detach() for p, q in zip(model.parameters(), base.parameters())])
    for small, big in zip(updates[0], updates[2]):
        assert big.norm().item() == pytest.approx(small.norm().item(), rel=2e-2)
        # Same direction too (bf16 Newton–Schulz, so not bit-exact).
        cos = torch.nn.functional.cosine_similarity(small.flatten(), big.flatten(), dim=0)
        assert cos > 0.999
    for mid, big in zip(updates[1], updates[2]):
        # Orthogonalised update ≈ lr × (singular values in ~[0.5, 1.5]): size set by lr, not by the gradient.
        assert 0.1 * 0.3 < big.norm().item() / min(big.shape) ** 0.5 < 0.1 * 2.0
        assert big.norm().item() == pytest.approx(mid.norm().item(), rel=2e-2)
