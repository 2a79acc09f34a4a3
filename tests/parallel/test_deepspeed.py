"""DeepSpeed ZeRO-2/3 on CPU (DeepSpeed's CPU accelerator over gloo, 2 processes)."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from tests.parallel import zero_worker
from tests.parallel.test_ulysses import free_port

pytest.importorskip("deepspeed")


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_muon_adamw_update_under_zero_equals_the_unsharded_update(stage, tmp_path):
    mp.spawn(zero_worker.run, args=(2, free_port(), stage, str(tmp_path)), nprocs=2, join=True)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers: the same fp32 summation order where it can be had
    try:
        res = {**torch.load(tmp_path / "result.pt", weights_only=True), **zero_worker.unsharded_reference(2)}
    finally:
        torch.set_num_threads(threads)
    # The AdamW gradient norm is measured across ranks as in one process (and clipped: the limit is 1e-3).
    assert res["norms"][0] == pytest.approx(res["ref_norms"][0], rel=1e-5)
    assert res["norms"][1] == pytest.approx(res["ref_norms"][1], rel=1e-2)  # after a bf16 Muon step
    assert min(res["ref_norms"]) > 1e-2
    kinds = set()
    for step, before in ((0, res["before"]), (1, res["unsharded"][0])):
        for name, want in res["unsharded"][step].items():
            start = before[name] if step == 0 else res["sharded"][0][name]
            step_want, step_got = want - before[name], res["sharded"][step][name] - start
            assert step_want.abs().max() > 0, name
            kind = res["routes"][name]
            kinds.add(kind)
            err = float((step_got - step_want).norm() / step_want.norm())
            if step == 0 and kind == "adamw":
                # Adam divides by sqrt(v): elements with near-zero gradients keep fp32 summation-order noise.
                assert err < 1e-4, (name, err)
            else:
                # Gradients equal up to fp32 summation order; the bf16 Newton-Schulz iteration amplifies that
                # to ~1e-2 on ill-conditioned gradients (most matrices come out bit-identical). Orthogonalising
                # a shard instead of the whole matrix would be off by O(1).
                assert err < (3e-2 if step == 0 else 5e-2), (step, name, err)
    assert kinds == {"muon", "adamw"}


def test_deepspeed_muon_step_is_torch_muon_with_original_lr_rule():
    # DeepSpeed orthogonalises inside ZeRO with its own Muon step; talkdit validates the settings that make
    # it torch's Muon (Nesterov, 5 steps, adjust_lr_fn="original"). Both run Newton-Schulz in bf16, so on a
    # well-conditioned gradient they agree to bf16 rounding, and the shape rule scales tall matrices alike.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.zero.muon.original_muon import muon_update

    g = torch.Generator().manual_seed(0)
    for shape in ((32, 32), (64, 16), (16, 64)):
        grad = torch.randn(shape, generator=g)
        ds = muon_update(grad.clone(), torch.zeros(shape), 0.95, ns_method="standard")
        param = torch.nn.Parameter(torch.zeros(shape))
        param.grad = grad.clone()
        torch.optim.Muon([param], lr=1.0, weight_decay=0.0, momentum=0.95, adjust_lr_fn="original").step()
        torch_update = -param.detach()
        assert float((ds - torch_update).norm() / torch_update.norm()) < 5e-2, shape
