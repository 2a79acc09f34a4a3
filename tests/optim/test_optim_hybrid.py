import copy
import io

import pytest
import torch
from torch import nn

from trainer.optim import MuonAdamW, OptimConfig, build_optimizer


def _fill_grads(model, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=gen) * scale


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _newton_schulz_fp32(grad, ns_coefficients, ns_steps, eps):
    """Keller Jordan's quintic Newton-Schulz iteration (torch's, without its bf16 cast)."""
    a, b, c = ns_coefficients
    x = grad.float()
    x = x.T if grad.size(0) > grad.size(1) else x
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if grad.size(0) > grad.size(1) else x


@pytest.mark.parametrize("adam_wd, muon_wd", [(0.0, 0.0), (0.1, 0.01)])
def test_step_equals_standalone_muon_and_adamw(ltx_stage1, adam_wd, muon_wd, monkeypatch):
    # On CPU talkdit orthogonalises in float32 (bf16 matmuls are emulated there); torch's Muon step with the
    # same iteration in float32 is the reference.
    monkeypatch.setattr(torch.optim._muon, "_zeropower_via_newtonschulz", _newton_schulz_fp32)
    cfg = OptimConfig(lr_adam=1e-3, adam_weight_decay=adam_wd, muon_weight_decay=muon_wd)
    reference = copy.deepcopy(ltx_stage1)
    bundle = build_optimizer(ltx_stage1, cfg)
    ref_params = dict(reference.named_parameters())
    muon_params = [ref_params[r.name] for r in bundle.routes if r.optimizer == "muon"]
    decay = [ref_params[r.name] for r in bundle.routes if r.optimizer == "adamw" and (r.decay or not adam_wd)]
    no_decay = [ref_params[r.name] for r in bundle.routes if r.optimizer == "adamw" and adam_wd and not r.decay]
    ref_muon = torch.optim.Muon(
        muon_params,
        lr=1e-1,
        weight_decay=muon_wd,
        momentum=0.95,
        nesterov=True,
        ns_steps=5,
        adjust_lr_fn="original",
    )
    adam_groups = [{"params": decay, "weight_decay": adam_wd}]
    if no_decay:
        adam_groups.append({"params": no_decay, "weight_decay": 0.0})
    ref_adamw = torch.optim.AdamW(adam_groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    initial = _params(ltx_stage1)
    for step in range(3):
        _fill_grads(ltx_stage1, seed=step)
        _fill_grads(reference, seed=step)
        bundle.optimizer.step()
        bundle.scheduler.step()
        ref_muon.step()
        ref_adamw.step()
    ours, theirs = _params(ltx_stage1), _params(reference)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-6, msg=name)
    # Non-vacuous: every trainable tensor moved, every frozen one did not.
    for name, param in ltx_stage1.named_parameters():
        assert torch.equal(param, initial[name]) != param.requires_grad, name


def test_wrapper_groups_are_inner_dicts_and_scheduler_drives_both(ltx_stage1):
    bundle = build_optimizer(ltx_stage1, OptimConfig(lr_adam=1e-5, warmup_steps=4))
    opt = bundle.optimizer
    assert opt.param_groups[0] is opt.muon.param_groups[0]
    assert opt.param_groups[1] is opt.adamw.param_groups[0]
    assert [g["optimizer"] for g in opt.param_groups] == ["muon", "adamw"]
    assert opt.muon.param_groups[0]["initial_lr"] == pytest.approx(1e-3)
    assert opt.adamw.param_groups[0]["initial_lr"] == pytest.approx(1e-5)
    assert opt.muon.param_groups[0]["lr"] == 0.0  # warm-up starts at 0
    _fill_grads(ltx_stage1, 0)
    opt.step()
    bundle.scheduler.step()
    assert opt.muon.param_groups[0]["lr"] == pytest.approx(1e-3 / 4)
    assert opt.adamw.param_groups[0]["lr"] == pytest.approx(1e-5 / 4)


def test_step_runs_closure_once_and_zero_grad(ltx_stage1):
    bundle = build_optimizer(ltx_stage1, OptimConfig())
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        _fill_grads(ltx_stage1, 0)
        return torch.tensor(3.0)

    with torch.no_grad():
        loss = bundle.optimizer.step(closure)
    assert calls == [True] and loss.item() == 3.0
    state = bundle.optimizer.state
    assert len(state) == len(bundle.routes)
    muon_p = bundle.optimizer.muon.param_groups[0]["params"][0]
    adam_p = bundle.optimizer.adamw.param_groups[0]["params"][0]
    assert "momentum_buffer" in state[muon_p] and "exp_avg" in state[adam_p]
    bundle.optimizer.zero_grad()
    assert all(p.grad is None for p in ltx_stage1.parameters())


def test_muon_rejects_non_matrices():
    lin = nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"Muon only takes 2-D.*lin\.bias.*\(4,\)"):
        MuonAdamW([{"optimizer": "muon", "params": [("lin.weight", lin.weight), ("lin.bias", lin.bias)]}])
    conv = nn.Conv1d(4, 4, 3)
    opt = MuonAdamW([{"optimizer": "adamw", "params": [conv.bias]}])
    with pytest.raises(ValueError, match="Muon only takes 2-D"):
        opt.add_param_group({"optimizer": "muon", "params": [conv.weight]})


def test_group_validation():
    lin = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="'optimizer'"):
        MuonAdamW([{"params": [lin.weight]}])
    with pytest.raises(ValueError, match="already in a MuonAdamW group"):
        MuonAdamW(
            [
                {"optimizer": "muon", "params": [lin.weight]},
                {"optimizer": "adamw", "params": [lin.weight, lin.bias]},
            ]
        )


def test_muon_only_and_adamw_only_sides():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False))
    bundle = build_optimizer(model, OptimConfig(adamw_patterns=[]))
    assert bundle.optimizer.adamw is None and bundle.optimizer.muon is not None
    _fill_grads(model, 0)
    before = _params(model)
    bundle.optimizer.step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())
    sd = _roundtrip(bundle.optimizer.state_dict())
    assert sd["adamw"] is None
    bundle.optimizer.load_state_dict(sd)

    other = build_optimizer(model, OptimConfig(name="adamw"))
    assert other.optimizer.muon is None
    with pytest.raises(ValueError, match="muon side"):
        other.optimizer.load_state_dict(sd)
    with pytest.raises(ValueError, match="not a MuonAdamW state dict"):
        other.optimizer.load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())


def test_state_dict_round_trip_resumes_exactly(ltx_stage2):
    cfg = OptimConfig(lr_adam=1e-3, warmup_steps=2, schedule="cosine", total_steps=8, adam_weight_decay=0.01)
    model_a = ltx_stage2
    bundle_a = build_optimizer(model_a, cfg)
    for step in range(3):
        _fill_grads(model_a, step)
        bundle_a.optimizer.step()
        bundle_a.scheduler.step()

    saved = _roundtrip(
        {
            "model": {k: v.clone() for k, v in model_a.state_dict().items()},
            "optimizer": bundle_a.optimizer.state_dict(),
            "scheduler": bundle_a.scheduler.state_dict(),
        }
    )
    model_b = copy.deepcopy(model_a)
    model_b.load_state_dict(saved["model"])
    bundle_b = build_optimizer(model_b, cfg)
    bundle_b.optimizer.load_state_dict(saved["optimizer"])
    bundle_b.scheduler.load_state_dict(saved["scheduler"])
    # After load, torch replaced the inner group dicts; the wrapper must still expose (and schedule) them.
    assert bundle_b.optimizer.param_groups[0] is bundle_b.optimizer.muon.param_groups[0]
    model_c = copy.deepcopy(model_b)  # control: same weights, fresh optimizer state
    bundle_c = build_optimizer(model_c, cfg)

    for step in range(3, 6):
        for model, bundle in ((model_a, bundle_a), (model_b, bundle_b), (model_c, bundle_c)):
            _fill_grads(model, step)
            bundle.optimizer.step()
            bundle.scheduler.step()
    a, b, c = _params(model_a), _params(model_b), _params(model_c)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert any(not torch.equal(a[n], c[n]) for n in a)  # state matters, so the check above can fail
    lrs_a = [g["lr"] for g in bundle_a.optimizer.param_groups]
    assert lrs_a == [g["lr"] for g in bundle_b.optimizer.param_groups]
    assert lrs_a == [g["lr"] for g in bundle_b.optimizer.muon.param_groups + bundle_b.optimizer.adamw.param_groups]


def test_deepcopy_keeps_groups_and_state(ltx_stage1):
    bundle = build_optimizer(ltx_stage1, OptimConfig())
    _fill_grads(ltx_stage1, 0)
    bundle.optimizer.step()
    clone = copy.deepcopy(bundle.optimizer)
    assert len(clone.param_groups) == len(bundle.optimizer.param_groups)
    assert len(clone.state) == len(bundle.optimizer.state)
    assert clone.param_groups[0] is clone.muon.param_groups[0]
