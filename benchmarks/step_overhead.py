"""Overhead of the Lightning training step over a hand-written PyTorch loop (target ratio <= 1.10).

Both loops run in this process on the same tiny model, the same batch and the same per-step random
draws, and do the same work: the condition/noise/mask preparation, forward, backward, AdamW-only
clipping, the Muon+AdamW step and the scheduler step. The Lightning side is a full ``trainer.fit`` with
the module's logging into a CSV logger at the experiment's ``loop.log_every_n_steps`` and the callbacks every
run has (:func:`trainer.state_callbacks.training_state_callbacks`; progress bar and checkpointing off, as they
are not per-step work). Per-step wall times are taken between consecutive
step ends after a warm-up, in rounds that alternate the two loops so that machine noise hits both
alike. Prints one JSON object.

Usage: python benchmarks/step_overhead.py [--steps 30] [--rounds 5] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger

from trainer.config.compose import load_train_config
from trainer.data.buckets import Compression, buckets_for
from trainer.lightning_module import TalkingHeadModule
from trainer.state_callbacks import training_state_callbacks


def synthetic_batch(cfg, seed: int = 0) -> dict:
    """A fixed batch of the config's first bucket in the collated format (random frames, boxes, features)."""
    g = torch.Generator().manual_seed(seed)
    d = cfg.data
    bucket = buckets_for(d, Compression.of(cfg.model.vae))[0]
    batch_size, f, h, w = bucket.batch_size, bucket.video_frames, bucket.height, bucket.width
    refs = cfg.objective.num_reference_frames
    rows = int(np.ceil(f / 25.0 * cfg.audio.feature_rate))
    box = torch.tensor([w * 0.3, h * 0.55, w * 0.7, h * 0.9])
    return {
        "frames": torch.randint(0, 256, (batch_size, f, h, w, 3), generator=g, dtype=torch.uint8),
        "fps": torch.full((batch_size,), 25.0),
        "frame_start": torch.zeros(batch_size, dtype=torch.long),
        "whisper": torch.randn(batch_size, rows, cfg.audio.feature_layers, cfg.audio.feature_dim, generator=g).half(),
        "whisper_len": torch.full((batch_size,), rows),
        "lower_face_boxes": box.expand(batch_size, f, 4).clone(),
        "ref_frames": torch.randint(0, 256, (batch_size, refs, h, w, 3), generator=g, dtype=torch.uint8),
        "ref_lower_face_boxes": box.expand(batch_size, refs, 4).clone(),
        "captions": ["a person talking"] * batch_size,
        "keys": [f"k{i}" for i in range(batch_size)],
        "num_frames": f,
    }


class StepTimes(L.Callback):
    """Wall-clock time at the end of every training step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Record the time."""
        self.ends.append(time.perf_counter())


def lightning_round(cfg, batch: dict, steps: int, logdir: Path) -> list[float]:
    """Per-step times of ``trainer.fit`` over ``steps`` steps."""
    torch.manual_seed(0)
    module = TalkingHeadModule(cfg)
    loader = torch.utils.data.DataLoader([batch] * steps, batch_size=None, shuffle=False)
    timer = StepTimes()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=CSVLogger(str(logdir)),
        log_every_n_steps=cfg.loop.log_every_n_steps,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        # The callbacks every run has (data position, RNG state, throughput rows, parameter table), then the timer.
        callbacks=[*training_state_callbacks(cfg.data), timer],
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    return np.diff(timer.ends).tolist()


def manual_round(cfg, batch: dict, steps: int) -> list[float]:
    """Per-step times of the same work written as a plain PyTorch loop."""
    torch.manual_seed(0)
    module = TalkingHeadModule(cfg)
    module.dit.train()
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    ends = []
    for step in range(steps):
        seed = np.random.SeedSequence([cfg.seed, step, 0]).generate_state(1)[0]
        inputs = module.prepare_step(batch, torch.Generator().manual_seed(int(seed)))
        loss = module.compute_loss(inputs).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        module.configure_gradient_clipping(opt)
        opt.step()
        sched.step()
        ends.append(time.perf_counter())
    return np.diff(ends).tolist()


def main() -> None:
    """Run the comparison and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_train_config(["experiment=smoke", f"data.shards={tmp}", "loop.progress_bar=false"])
        batch = synthetic_batch(cfg)
        manual, lightning = [], []
        for r in range(args.rounds):
            manual += manual_round(cfg, batch, args.steps)[args.warmup :]
            lightning += lightning_round(cfg, batch, args.steps, Path(tmp) / f"round{r}")[args.warmup :]
    m, lt = statistics.median(manual), statistics.median(lightning)
    print(
        json.dumps(
            {
                "benchmark": "step_overhead",
                "model": cfg.model.name,
                "batch_size": len(batch["keys"]),
                "frames": batch["num_frames"],
                "resolution": list(batch["frames"].shape[2:4]),
                "steps_per_round": args.steps,
                "rounds": args.rounds,
                "warmup_steps_dropped": args.warmup,
                "manual_step_s_median": round(m, 5),
                "lightning_step_s_median": round(lt, 5),
                "ratio_lightning_over_manual": round(lt / m, 4),
                "target_ratio_max": 1.10,
                "meets_target": lt / m <= 1.10,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
