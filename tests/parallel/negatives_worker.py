"""Process bodies of the cross-rank negative tests (real gloo process groups).

Kept free of heavy imports at module level: ``mp.spawn`` imports this module in every child.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from trainer.parallel.mesh import build_mesh
from trainer.parallel.negatives import exchange_negatives


def _init(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def _target(seed: int, bsz: int, grid: tuple[int, int, int], channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(bsz, grid[0] * grid[1] * grid[2], channels, generator=g)


def module_step(rank: int, world: int, port: int, shards: str, run_dir: str) -> None:
    """One training step's loss of the smoke model at batch 1 per rank against Eq. 8 written out by hand."""
    _init(rank, world, port)
    try:
        from tests.train.conftest import stream_batches, tiny_overrides
        from trainer.config.compose import load_train_config
        from trainer.lightning_module import TalkingHeadModule

        # 12 video tokens per batch = one 64x64 clip of 17 frames (3 latent frames of 2x2 tokens).
        cfg = load_train_config(tiny_overrides(shards, run_dir, 1, "data.tokens_per_batch=12"))
        module = TalkingHeadModule(cfg)
        module.mesh = build_mesh(1)
        batch = stream_batches(cfg, 1, rank=rank, world=world)[0]
        assert len(batch["keys"]) == 1, batch["keys"]
        inputs = module.prepare_step(batch, module.step_generator())
        out = module.compute_loss(inputs)
        loss, metrics = out.loss, out.metrics

        every: list = [None] * world
        dist.all_gather_object(every, inputs.target)
        negative = every[(rank - 1) % world]
        assert not torch.equal(negative, inputs.target)  # another rank's sample
        with torch.no_grad():
            pred = module.dit(
                inputs.tokens, inputs.timestep, inputs.text, inputs.text_mask, inputs.coords, inputs.audio
            )[:, inputs.num_ref :]
        m = inputs.mask[..., None]
        pos = ((pred - inputs.target) ** 2 * m).sum()
        neg = ((pred - negative) ** 2 * m).sum()
        count = m.sum() * pred.shape[-1]
        lam = cfg.objective.contrastive_lambda
        assert lam > 0
        torch.testing.assert_close(loss.detach(), (pos - lam * neg) / count, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(metrics["loss_fm"], pos / count, rtol=1e-5, atol=1e-7)
        assert (neg / count).item() > 1e-3  # the term is not vanishingly small
        assert metrics["contrastive_negatives"] == world and metrics["contrastive_missing"] == 0
    finally:
        dist.destroy_process_group()


def exchanges(rank: int, world: int, port: int) -> None:
    """Layouts that do and do not pair up, over 4 data-parallel ranks, then 2 sequence groups of 2 ranks."""
    _init(rank, world, port)
    try:
        assert world == 4
        mesh = build_mesh(1)
        # Ranks 0 and 2 share a grid; rank 1 holds two samples of a larger grid (the gathered buffers are
        # padded to it); rank 3's grid is its own.
        layouts = [(1, (3, 2, 2)), (2, (4, 2, 2)), (1, (3, 2, 2)), (1, (3, 1, 4))]
        targets = [_target(r, b, grid) for r, (b, grid) in enumerate(layouts)]
        negatives, plan = exchange_negatives(targets[rank], layouts[rank][1], mesh)
        assert plan.batch_sizes == (1, 2, 1, 1) and plan.partners == (2, None, 0, None)
        assert (plan.used, plan.missing) == (4, 1)  # 0 and 2 from each other, rank 1 in-batch; rank 3 none
        want = {0: targets[2][:1], 1: torch.roll(targets[1], 1, 0), 2: targets[0][:1], 3: None}[rank]
        assert (negatives is None) if want is None else torch.equal(negatives, want)

        # Every single-sample rank with its own grid: nothing to pair, and the count says so.
        grid = (1 + rank, 1, 2)
        negatives, plan = exchange_negatives(_target(rank, 1, grid), grid, mesh)
        assert negatives is None and (plan.used, plan.missing) == (0, 4)

        # Two sequence groups {0, 1} and {2, 3}: both ranks of a group hold the same sample and receive the
        # other group's whole target through their own data-parallel group ({0, 2} and {1, 3}).
        mesh = build_mesh(2)
        assert mesh.dp_size == 2 and mesh.dp_rank == rank // 2
        mine = _target(10 + mesh.dp_rank, 1, (3, 2, 2))
        other = _target(10 + 1 - mesh.dp_rank, 1, (3, 2, 2))
        negatives, plan = exchange_negatives(mine, (3, 2, 2), mesh)
        assert torch.equal(negatives, other)
        assert plan.partners == (1, 0) and (plan.used, plan.missing) == (2, 0)
        group_copy = [torch.empty_like(negatives) for _ in range(2)]
        dist.all_gather(group_copy, negatives, group=mesh.sp_group)
        assert torch.equal(group_copy[0], group_copy[1])
    finally:
        dist.destroy_process_group()
