"""Process body of the FSDP2 optimizer test: two ``MuonAdamW`` steps of the audio adapter with the DiT
sharded by ``fully_shard`` (gloo), saved for comparison with the same steps unsharded."""

from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from tests.parallel.zero_worker import OPTIM, batch_loss, trainable_dit
from trainer.optim import build_optimizer
from trainer.optim.clipping import clip_adamw_grad_norm
from trainer.parallel.fsdp import shard_dit


def run(rank: int, world: int, port: int, out_dir: str) -> None:
    """Two sharded steps on this rank; rank 0 saves the gathered weights and AdamW gradient norms."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _sharded_steps(rank, world, out_dir)
        dist.barrier()
    finally:
        # FSDP2's sharded module and optimizer hold gloo work objects; freed only at interpreter exit they
        # abort the process ("terminate called without an active exception", about 1 run in 8), so they
        # are collected here, while the process group and the interpreter are alive.
        gc.collect()
        dist.destroy_process_group()


def _sharded_steps(rank: int, world: int, out_dir: str) -> None:
    dit = trainable_dit()
    shard_dit(dit, init_device_mesh("cpu", (world,)), reshard_after_forward=True)
    assert all(isinstance(p, DTensor) for p in dit.parameters())
    bundle = build_optimizer(dit.transformer, OPTIM)
    norms, steps = [], []
    for step in range(2):
        batch_loss(dit, rank, step).backward()  # FSDP2 averages gradients over the mesh
        norms.append(float(clip_adamw_grad_norm(bundle.optimizer, OPTIM.grad_clip_norm).full_tensor()))
        bundle.optimizer.step()
        bundle.optimizer.zero_grad()
        bundle.scheduler.step()
        params = dit.transformer.named_parameters()
        steps.append({n: p.full_tensor().detach().clone() for n, p in params if p.requires_grad})
    if rank == 0:
        torch.save({"sharded": steps, "norms": norms}, os.path.join(out_dir, "result.pt"))


def unsharded_reference(world: int) -> dict:
    """The same two steps in one process with torch's Muon and AdamW on whole tensors."""
    ref = trainable_dit()
    before = {n: p.detach().clone() for n, p in ref.transformer.named_parameters() if p.requires_grad}
    bundle = build_optimizer(ref.transformer, OPTIM)
    norms, steps = [], []
    for step in range(2):
        (sum(batch_loss(ref, r, step) for r in range(world)) / world).backward()
        norms.append(float(clip_adamw_grad_norm(bundle.optimizer, OPTIM.grad_clip_norm)))
        bundle.optimizer.step()
        bundle.optimizer.zero_grad()
        bundle.scheduler.step()
        steps.append({n: p.detach().clone() for n, p in ref.transformer.named_parameters() if p.requires_grad})
    routes = {r.name: r.optimizer for r in bundle.routes}
    return {"before": before, "unsharded": steps, "routes": routes, "ref_norms": norms}
