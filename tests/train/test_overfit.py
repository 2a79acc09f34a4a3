"""Both stages fit one fixed batch: the flow-matching loss falls well below where it started."""

import pytest
import torch

from tests.train.conftest import stream_batches, tiny_overrides
from trainer.config.compose import load_train_config
from trainer.lightning_module import TalkingHeadModule


def fixed_batch(cfg):
    return stream_batches(cfg, 1)[0]


def fit(module, batch, steps):
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    gen_seed = 1234
    losses = []
    module.dit.train()
    for _ in range(steps):
        # The same noise, timestep and conditions every step: a fixed regression problem.
        inputs = module.prepare_step(batch, torch.Generator().manual_seed(gen_seed))
        out = module.compute_loss(inputs)
        loss, metrics = out.loss, out.metrics
        opt.zero_grad(set_to_none=True)
        loss.backward()
        module.configure_gradient_clipping(opt)
        opt.step()
        sched.step()
        losses.append(metrics["loss_fm"].item())
    return losses


@pytest.mark.slow
def test_stage1_overfits_one_batch(simple_shards, tmp_path):
    cfg = load_train_config(tiny_overrides(simple_shards, tmp_path, 1, "optim.warmup_steps=0", "stage.p_v2v=0.0"))
    torch.manual_seed(0)
    module = TalkingHeadModule(cfg)
    losses = fit(module, fixed_batch(cfg), 80)
    assert losses[-1] < 0.2 * losses[0], losses[::10]


@pytest.mark.slow
def test_stage2_overfits_one_batch(simple_shards, stage1, tmp_path):
    _, stage1_export, _ = stage1
    cfg = load_train_config(
        tiny_overrides(
            simple_shards,
            tmp_path,
            1,
            "stage=stage2_lora",
            f"stage.adapter_init={stage1_export}",
            "stage.lora.rank=8",
            "stage.lora.alpha=8",
            "optim.warmup_steps=0",
            "stage.p_id=1.0",
        )
    )
    torch.manual_seed(0)
    module = TalkingHeadModule(cfg)
    losses = fit(module, fixed_batch(cfg), 60)
    assert losses[-1] < 0.2 * losses[0], losses[::10]
