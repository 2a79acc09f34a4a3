"""Overhead of the sampler per Euler step over bare transformer calls on the same inputs.

Both sides run in this process on the tiny model, on one V2V clip with identity references: the bare
side calls the DiT on DiT inputs assembled once; the sampler side runs :meth:`EulerSampler.sample`,
which per step rebuilds the inputs with the trainer's assembly (per-token times, RoPE coordinates,
references, audio routing), runs the DiT and makes the masked Euler update. Guidance is off on both
sides (one DiT pass per step) so the ratio isolates the sampler's own work. Rounds alternate the two
sides; medians of per-step times. Prints one JSON object.

Usage: python benchmarks/sampler_overhead.py [--steps 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from step_overhead import synthetic_batch  # sibling script: benchmarks/ is on sys.path when run

from eval.sampler.batch import sample_inputs_from_batch
from eval.sampler.config import GuidanceConfig, SamplerConfig
from eval.sampler.sampler import EulerSampler
from trainer.config.compose import load_train_config
from trainer.stage_model import build_stage_model


def main() -> None:
    """Run the comparison and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_train_config(["experiment=smoke", f"data.shards={tmp}"])
    model, _ = build_stage_model(cfg)
    model.eval()
    batch = synthetic_batch(cfg)
    with torch.no_grad():
        latents, refs = model.encode_latents(batch, torch.Generator().manual_seed(0))
        inputs = sample_inputs_from_batch(model, cfg, batch, latents, refs)
    sampler = EulerSampler(model.dit, SamplerConfig(num_steps=args.steps, guidance=GuidanceConfig(1.0, 1.0)))
    noise = torch.randn(latents.shape[0], latents[0, 0].numel(), latents.shape[1])
    x, _ = sampler.initial_state(inputs, noise)
    fixed = sampler.model_inputs(inputs, x, 0.5)

    @torch.no_grad()
    def bare() -> float:
        start = time.perf_counter()
        for _ in range(args.steps):
            model.dit(fixed.tokens, fixed.timestep, inputs.text, inputs.text_mask, fixed.coords, fixed.audio)
        return (time.perf_counter() - start) / args.steps

    def sampled() -> float:
        start = time.perf_counter()
        sampler.sample(inputs, noise)
        return (time.perf_counter() - start) / args.steps

    bare(), sampled()  # warm-up
    bare_t, sampler_t = [], []
    for _ in range(args.rounds):
        bare_t.append(bare())
        sampler_t.append(sampled())
    b, s = statistics.median(bare_t), statistics.median(sampler_t)
    print(
        json.dumps(
            {
                "benchmark": "sampler_overhead",
                "tokens": int(fixed.tokens.shape[1]),
                "bare_ms_per_step": round(b * 1e3, 3),
                "sampler_ms_per_step": round(s * 1e3, 3),
                "ratio_sampler_over_bare": round(s / b, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
