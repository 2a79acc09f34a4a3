"""TeaCache on the sampler: speed and how far the sample moves, against uncached sampling in this run.

One V2V clip is sampled (40 Euler steps, audio guidance 2, one full-video pass per step) with
``teacache_threshold`` 0 (the baseline) and each given threshold; rounds alternate the settings and the
medians of the wall times are compared. For each threshold it prints the speed ratio over the baseline, the
share of block passes served from the cache, and the relative L2 distance of the sampled latents from the
baseline's (same noise). The model is a training checkpoint's (``--checkpoint``, e.g. the demo's stage 2,
whose DiT was trained, and a clip of ``--shards``) or, without one, the random smoke model on a synthetic clip.
Prints one JSON object.

Usage: python benchmarks/teacache_speed.py [--checkpoint CKPT --shards GLOB] [--thresholds 0.03 0.05 0.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time

import torch
from step_overhead import synthetic_batch  # sibling script: benchmarks/ is on sys.path when run

from eval.clips import clip_batch, read_clips
from eval.sampler.batch import sample_inputs_from_batch
from eval.sampler.config import GuidanceConfig, SamplerConfig
from eval.sampler.sampler import EulerSampler
from trainer.config.compose import load_train_config
from trainer.stage_model import build_stage_model, load_trained_model


def main() -> None:
    """Run the comparison and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--shards", default=None, help="clips of the checkpoint's layout (default: synthetic)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.03, 0.05, 0.1])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.checkpoint:
        model, cfg = load_trained_model(args.checkpoint)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_train_config(["experiment=smoke", f"data.shards={tmp}"])
        model, _ = build_stage_model(cfg)
        model.eval()
    if args.shards:
        clip, _, _ = read_clips(args.shards, cfg, 1)[0]
        batch = clip_batch(clip, cfg.objective.num_reference_frames)
    else:
        batch = {k: v[:1] if isinstance(v, torch.Tensor | list) else v for k, v in synthetic_batch(cfg).items()}
    with torch.no_grad():
        latents, refs = model.encode_latents(batch, torch.Generator().manual_seed(0))
        inputs = sample_inputs_from_batch(model, cfg, batch, latents, refs)
    base = SamplerConfig(num_steps=args.steps, guidance=GuidanceConfig(audio=2.0, text=1.0), block_size=0)
    samplers = {
        th: EulerSampler(model.dit, dataclasses.replace(base, teacache_threshold=th), cfg.objective.timestep_loc)
        for th in [0.0, *args.thresholds]
    }
    times: dict[float, list[float]] = {th: [] for th in samplers}
    outs: dict[float, torch.Tensor] = {}
    for _ in range(args.rounds):
        for th, sampler in samplers.items():
            start = time.perf_counter()
            outs[th] = sampler.sample(inputs)
            times[th].append(time.perf_counter() - start)
    baseline = statistics.median(times[0.0])
    ref = outs[0.0]
    results = []
    for th in args.thresholds:
        cache = samplers[th].teacache
        passes = cache.computed + cache.skipped
        results.append(
            {
                "threshold": th,
                "seconds": round(statistics.median(times[th]), 3),
                "speedup_over_uncached": round(baseline / statistics.median(times[th]), 3),
                "cached_share_of_middle_passes": round(cache.skipped / passes, 3) if passes else 0.0,
                "relative_l2_to_uncached": round(float((outs[th] - ref).norm() / ref.norm()), 4),
            }
        )
    print(
        json.dumps(
            {
                "benchmark": "teacache_speed",
                "model": args.checkpoint or "smoke (random)",
                "tokens": int(latents[0].numel() // latents.shape[1]),
                "steps": args.steps,
                "uncached_seconds": round(baseline, 3),
                "target_speedup": 1.6,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
