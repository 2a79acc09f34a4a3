import math
import warnings

import lightning
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainer.optim import MuonAdamW, OptimConfig, build_optimizer, clip_adamw_grad_norm

CFG = OptimConfig(lr_adam=1e-3, warmup_steps=2, schedule="cosine", total_steps=10, grad_clip_norm=0.5)


class TinyModule(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 16), nn.Linear(16, 1))
        self.bundle = None
        self.clip_calls = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        self.bundle = build_optimizer(self, CFG)
        return {
            "optimizer": self.bundle.optimizer,
            "lr_scheduler": {"scheduler": self.bundle.scheduler, "interval": "step"},
        }

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        muon_grads = [p.grad.clone() for g in optimizer.param_groups if g["optimizer"] == "muon" for p in g["params"]]
        norm = clip_adamw_grad_norm(optimizer, CFG.grad_clip_norm)
        after = [p.grad for g in optimizer.param_groups if g["optimizer"] == "muon" for p in g["params"]]
        self.clip_calls.append((norm.item(), all(torch.equal(a, b) for a, b in zip(muon_grads, after))))


def _trainer(**kwargs):
    return lightning.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def _loader():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=gen)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True) * 10), batch_size=2)


def test_lightning_runs_three_steps_with_schedule():
    module = TinyModule()
    initial = {n: p.detach().clone() for n, p in module.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's "few workers" / "small dataset" advice
        _trainer(max_steps=3).fit(module, _loader())

    opt = module.trainer.optimizers[0]
    assert isinstance(opt, MuonAdamW)
    assert module.trainer.global_step == 3
    assert module.bundle.scheduler.last_epoch == 3
    # After 3 steps (warm-up 2, cosine to 10): factor = 0.5·(1 + cos(π·1/8)).
    factor = 0.5 * (1 + math.cos(math.pi * (3 - 2) / (10 - 2)))
    lrs = {g["optimizer"]: g["lr"] for g in opt.param_groups}
    assert lrs["adamw"] == pytest.approx(1e-3 * factor, rel=1e-12)
    assert lrs["muon"] == pytest.approx(1e-1 * factor, rel=1e-12)
    assert opt.muon.param_groups[0]["lr"] == lrs["muon"]

    assert len(module.clip_calls) == 3 and all(untouched for _, untouched in module.clip_calls)
    # Step 0 runs at lr 0 (warm-up); steps 1 and 2 move every parameter.
    for name, param in module.named_parameters():
        assert not torch.equal(param.detach(), initial[name]), name
    muon_names = {r.name for r in module.bundle.routes if r.optimizer == "muon"}
    assert muon_names == {"net.0.weight", "net.3.weight", "net.4.weight"}


def test_lightning_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    # One batch per epoch, so a resume at a step boundary is also an epoch boundary (no data skipping).
    loader = DataLoader(_loader().dataset, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        straight = TinyModule()
        _trainer(max_steps=5).fit(straight, loader)

        first = TinyModule()
        trainer = _trainer(max_steps=3)
        trainer.fit(first, loader)
        ckpt = tmp_path / "step3.ckpt"
        trainer.save_checkpoint(ckpt)
        assert torch.load(ckpt, weights_only=True)["optimizer_states"][0]["format"] == "talkdit.MuonAdamW/1"

        resumed = TinyModule()
        _trainer(max_steps=5).fit(resumed, loader, ckpt_path=ckpt)

    assert resumed.trainer.global_step == 5 and resumed.bundle.scheduler.last_epoch == 5
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    assert [g["lr"] for g in straight.trainer.optimizers[0].param_groups] == [
        g["lr"] for g in resumed.trainer.optimizers[0].param_groups
    ]
