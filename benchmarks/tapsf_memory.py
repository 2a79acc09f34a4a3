"""Peak memory and time of one TAPSF denoising step vs one full-sequence step on a long latent video.

The DiT is the tiny random LTX transformer of ``conf/model/tiny.yaml`` (wrapped in
:class:`trainer.model.dit.TalkingHeadDiT`, no audio), run under ``torch.no_grad()`` as in sampling.
One *step* is the velocity of every latent frame: the full step is one DiT call on all ``T·H·W``
tokens; a TAPSF step is :func:`eval.sampler.tapsf.blockwise_velocity` over the step's blocks
(17-frame blocks, RoPE from global frame indices, per-token timesteps sliced per block). Two TAPSF
partitions are measured: unshifted (offset 0, a middle step) and shifted (offset 5, an early/late
step, one more block because the boundary remainders overlap their neighbours).

Memory, CPU: each variant runs in its own fresh Python process (so no variant inherits another's
allocator state) with glibc's ``MALLOC_MMAP_THRESHOLD_=65536`` (allocations of 64 KiB and more are
their own mappings, unmapped when freed, so resident memory follows live tensors). After building the
model and inputs and one warm-up step (one-time lazy initialisation is not step memory) the process
resets its peak resident set size (``echo 5 > /proc/self/clear_refs``), runs one step, and reports
``VmHWM − VmRSS_before``: the extra physical memory the step needed at its peak, whatever allocated
it (torch's CPU allocator, oneDNN scratch, Python). Memory, CUDA (``--device cuda``):
``torch.cuda.max_memory_allocated`` over the step minus the allocation before it.

Time: one process, a warm-up step of each variant, then ``--repeats`` rounds that run each variant
once (so machine noise hits all alike); the median per variant.
Prints one JSON object.

Usage: python benchmarks/tapsf_memory.py [--latent-frames 85] [--height 16] [--width 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from eval.sampler.tapsf import (
    TAPSFConfig,
    block_plan,
    block_video_coords,
    blockwise_velocity,
    slice_block,
)
from trainer.config.compose import compose_config
from trainer.config.schema import VAEConfig
from trainer.data.buckets import Compression
from trainer.model.backbone import load_transformer
from trainer.model.dit import TalkingHeadDiT
from trainer.model.sequence import patchify, unpatchify, video_coords

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {"full": None, "tapsf_unshifted": 0, "tapsf_shifted": 5}


def tiny_dit(device: torch.device) -> TalkingHeadDiT:
    """The tiny random DiT of ``conf/model/tiny.yaml`` (no audio adapter), eval mode."""
    cfg = OmegaConf.to_object(compose_config("train", ["model=tiny"]).model.transformer)
    return TalkingHeadDiT(load_transformer(cfg), None).to(device).eval()


def make_inputs(args, dit: TalkingHeadDiT, device: torch.device) -> dict:
    """Latents ``[1, C, T, H, W]``, per-token flow time ``[1, T·H·W]``, text and fps."""
    g = torch.Generator().manual_seed(0)
    arch = dit.transformer.config
    shape = (1, arch.in_channels, args.latent_frames, args.height, args.width)
    n = args.latent_frames * args.height * args.width
    return {
        "latents": torch.randn(shape, generator=g).to(device),
        "timestep": torch.full((1, n), 0.7, device=device),
        "text": torch.randn(1, 8, arch.caption_channels, generator=g).to(device),
        "text_mask": torch.ones(1, 8, device=device),
        "fps": torch.full((1,), 25.0, device=device),
    }


def block_fn(dit: TalkingHeadDiT, inputs: dict):
    """The per-block DiT call: tokens, sliced timesteps and global-frame RoPE for ``frame_indices``."""
    latents = inputs["latents"]
    _, _, frames, height, width = latents.shape

    def fn(block: torch.Tensor, frame_indices: torch.Tensor) -> torch.Tensor:
        coords = block_video_coords(frame_indices, 1, height, width, inputs["fps"])
        out = dit(
            patchify(block),
            slice_block(inputs["timestep"], frame_indices, frames),
            inputs["text"],
            inputs["text_mask"],
            coords,
        )
        return unpatchify(out, frame_indices.numel(), height, width)

    return fn


def full_step(dit: TalkingHeadDiT, inputs: dict) -> torch.Tensor:
    """Velocity ``[1, C, T, H, W]`` from one DiT call on the whole sequence."""
    latents = inputs["latents"]
    _, _, frames, height, width = latents.shape
    coords = video_coords(1, frames, height, width, inputs["fps"], latents.device)
    out = dit(patchify(latents), inputs["timestep"], inputs["text"], inputs["text_mask"], coords)
    return unpatchify(out, frames, height, width)


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1)) * 1024


def measure_peak(run, device: torch.device) -> int:
    """Extra peak memory (bytes) of ``run()`` (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_bytes("VmRSS")
    run()
    return _status_bytes("VmHWM") - before


def variant_step(name: str, args, dit: TalkingHeadDiT, inputs: dict):
    """A no-grad callable computing one step's velocity ``[1, C, T, H, W]`` for variant ``name``."""
    offset = VARIANTS[name]
    blocks = None if offset is None else block_plan(args.latent_frames, args.block_size, offset)
    fn = block_fn(dit, inputs)

    def step() -> torch.Tensor:
        with torch.no_grad():
            if blocks is None:
                return full_step(dit, inputs)
            return blockwise_velocity(inputs["latents"], blocks, fn)

    return step, blocks


def worker(args) -> dict:
    """Measure one variant's peak memory in this (fresh) process."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dit = tiny_dit(device)
    inputs = make_inputs(args, dit, device)
    step, blocks = variant_step(args.worker, args, dit, inputs)
    step()  # warm-up: one-time lazy initialisation is not the step's memory
    peak = measure_peak(step, device)
    hw = args.height * args.width
    return {
        "blocks": 1 if blocks is None else len(blocks),
        "tokens": args.latent_frames * hw,
        "max_tokens_per_call": args.latent_frames * hw if blocks is None else max(b.numel() for b in blocks) * hw,
        "peak_mib": round(peak / 2**20, 2),
    }


def timing_and_checks(args) -> dict:
    """Step times (rounds alternating the variants, so machine noise hits all alike) and checks.

    Checks: a one-block plan equals the full step exactly (block plumbing: token order, sliced
    timesteps, global RoPE); TAPSF's relative deviation from the full-sequence velocity (context cut).
    """
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dit = tiny_dit(device)
    inputs = make_inputs(args, dit, device)
    steps = {name: variant_step(name, args, dit, inputs)[0] for name in VARIANTS}
    times = {name: [] for name in VARIANTS}
    for name in VARIANTS:  # warm-up
        steps[name]()
    for _ in range(args.repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - t0)
    with torch.no_grad():
        full = steps["full"]()
        frames = args.latent_frames
        one = blockwise_velocity(inputs["latents"], block_plan(frames, frames), block_fn(dit, inputs))
        tapsf = steps["tapsf_shifted"]()
    return {
        "step_s_median": {name: round(statistics.median(t), 4) for name, t in times.items()},
        "max_abs_diff_framewise_check": float((one - full).abs().max()),
        "tapsf_vs_full_velocity_rel_l2": round(float((tapsf - full).norm() / full.norm()), 5),
    }


def run_variant(name: str, args) -> dict:
    """Run :func:`worker` for ``name`` in a fresh interpreter and parse its JSON line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    for key in ("latent_frames", "height", "width", "block_size", "device", "threads"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    # A fixed glibc mmap threshold: every allocation >= 64 KiB is its own mapping, returned to the
    # system when freed, so the warm-up step leaves no retained heap for the measured step to reuse.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    """Run all variants and print (and return) the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent-frames", type=int, default=85)
    parser.add_argument("--height", type=int, default=16, help="latent rows (x32 pixels)")
    parser.add_argument("--width", type=int, default=16, help="latent columns (x32 pixels)")
    parser.add_argument("--block-size", type=int, default=TAPSFConfig().block_size)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args)
        print(json.dumps(result))
        return result
    results = {name: run_variant(name, args) for name in VARIANTS}
    timing = timing_and_checks(args)
    for name, seconds in timing.pop("step_s_median").items():
        results[name]["step_s_median"] = seconds
    full = results["full"]
    report = {
        "benchmark": "tapsf_memory",
        "model": "tiny",
        "device": args.device,
        "threads": args.threads,
        "latent_shape": [args.latent_frames, args.height, args.width],
        "video_frames": Compression.of(VAEConfig()).video_frames(args.latent_frames),  # the tiny model's LTX VAE
        "block_size": args.block_size,
        "memory_measure": (
            "peak RSS (VmHWM) - RSS before, one fresh process per variant"
            if args.device == "cpu"
            else "cuda max_allocated"
        ),
        "timing_rounds": args.repeats,
        **results,
    }
    for name in ("tapsf_unshifted", "tapsf_shifted"):
        report[f"peak_ratio_{name}_over_full"] = round(results[name]["peak_mib"] / full["peak_mib"], 4)
        report[f"time_ratio_{name}_over_full"] = round(results[name]["step_s_median"] / full["step_s_median"], 4)
    report.update(timing)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
