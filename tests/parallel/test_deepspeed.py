"""DeepSpeed ZeRO-2/3 on CPU (DeepSpeed's CPU accelerator over gloo, 2 processes)."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from tests.parallel import zero_worker
from tests.parallel.updates import assert_same_updates, single_threaded
from tests.ports import free_port

pytest.importorskip("deepspeed")


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_muon_adamw_update_under_zero_equals_the_unsharded_update(stage, tmp_path):
    mp.spawn(zero_worker.run, args=(2, free_port(), stage, str(tmp_path)), nprocs=2, join=True)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    res = {**torch.load(tmp_path / "result.pt", weights_only=True), **single_threaded(zero_worker.unsharded_reference)}
    assert_same_updates(res)


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
