"""Process body of the ZeRO optimizer test: two optimizer steps of the audio adapter under DeepSpeed
ZeRO (gloo, DeepSpeed's CPU accelerator) against the same steps of ``MuonAdamW`` in one process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from tests.parallel.sp_worker import make_inputs, tiny_dit
from trainer.model.audio_adapter import adapter_parameter_names
from trainer.optim import build_optimizer
from trainer.optim.clipping import clip_adamw_grad_norm
from trainer.optim.config import OptimConfig
from trainer.optim.zero import build_zero_optimizer, clip_zero_adamw_grad_norm

# Tight AdamW clipping so that it bites; the Muon side must not care.
OPTIM = OptimConfig(lr_adam=1e-3, lr_muon_ratio=50.0, adam_weight_decay=0.01, warmup_steps=0, grad_clip_norm=1e-3)


def trainable_dit():
    dit = tiny_dit(heads=2, device=torch.device("cpu"))
    dit.requires_grad_(False)
    names = set(adapter_parameter_names(dit.transformer))
    for n, p in dit.transformer.named_parameters():
        p.requires_grad_(n in names)
    return dit


def batch_loss(dit, rank: int, step: int) -> torch.Tensor:
    """A loss on rank-and-step specific inputs (each rank sees different data, as in data parallelism)."""
    (x, t, text, text_mask, coords), audio, weight = make_inputs(torch.device("cpu"), 3)
    g = torch.Generator().manual_seed(100 * step + rank)
    x = x + torch.randn(x.shape, generator=g)
    weight = weight + torch.randn(weight.shape, generator=g)
    return (dit(x, t, text, text_mask, coords, audio) * weight).mean()


def unsharded_reference(world: int) -> dict:
    """The same two steps in one process: mean gradient over the ranks' losses, DeepSpeed's Muon formula on
    each whole matrix, talkdit's AdamW and AdamW-only clipping (run outside the DeepSpeed processes)."""
    from deepspeed.runtime.zero.muon.original_muon import muon_update

    ref = trainable_dit()
    before = {n: p.detach().clone() for n, p in ref.transformer.named_parameters() if p.requires_grad}
    bundle = build_optimizer(ref.transformer, OPTIM)
    routes = {r.name: r.optimizer for r in bundle.routes}
    muon_params = [(n, p) for n, p in ref.transformer.named_parameters() if routes.get(n) == "muon"]
    momentum = {n: torch.zeros_like(p) for n, p in muon_params}
    norms, steps = [], []
    for step in range(2):
        loss = sum(batch_loss(ref, r, step) for r in range(world)) / world
        loss.backward()
        norms.append(float(clip_adamw_grad_norm(bundle.optimizer, OPTIM.grad_clip_norm)))
        lr = bundle.optimizer.muon.param_groups[0]["lr"]
        with torch.no_grad():
            for n, p in muon_params:
                update = muon_update(p.grad.clone(), momentum[n], OPTIM.muon_momentum, ns_method="standard")
                p.mul_(1 - lr * OPTIM.muon_weight_decay)
                p.add_(update, alpha=-lr)
                p.grad = None
        bundle.optimizer.adamw.step()
        bundle.optimizer.zero_grad()
        bundle.scheduler.step()
        steps.append({n: p.detach().clone() for n, p in ref.transformer.named_parameters() if p.requires_grad})
    return {"before": before, "unsharded": steps, "routes": routes, "ref_norms": norms}


def run(rank: int, world: int, port: int, stage: int, out_dir: str) -> None:
    """Two ZeRO steps on this rank; rank 0 saves the updated weights and the AdamW gradient norms."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        DS_ACCELERATOR="cpu",
    )
    torch.set_num_threads(1)
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param

    deepspeed.init_distributed(dist_backend="gloo")
    try:
        dit = trainable_dit()
        bundle = build_zero_optimizer(dit.transformer, OPTIM)
        config = {
            "train_micro_batch_size_per_gpu": 1,
            "zero_optimization": {"stage": stage, "reduce_scatter": stage == 2},
            "gradient_clipping": 0.0,
            "zero_allow_untested_optimizer": True,
        }
        engine, _, _, _ = deepspeed.initialize(
            model=dit,
            optimizer=bundle.optimizer,
            model_parameters=[p for p in dit.parameters() if p.requires_grad],
            config=config,
        )
        norms, sharded = [], []
        for step in range(2):
            loss = batch_loss(engine, rank, step)
            engine.backward(loss)
            norms.append(float(clip_zero_adamw_grad_norm(dit.transformer, engine.optimizer, OPTIM.grad_clip_norm)))
            engine.step()
            bundle.scheduler.step()
            params = dit.transformer.named_parameters()
            sharded.append({n: safe_get_full_fp32_param(p).clone() for n, p in params if p.requires_grad})

        if rank == 0:
            torch.save({"sharded": sharded, "norms": norms}, os.path.join(out_dir, "result.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()
