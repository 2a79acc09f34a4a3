"""Loader throughput on the real recordings and generated clips, each against a baseline in this run.

(a) Decode-to-tensor rate of the loader's decoding path (decord on the shard member, frames to a torch
    tensor) against ``ffmpeg -f null`` decoding the same clips (the decoder's limit); target >= 0.8.
(b) Samples per second the training stream delivers from shards with cached latents (default worker
    count) against the samples per second a training step of the tiny model consumes; target >= 3.
(c) Peak resident memory of each dataloader worker.

The shards are built first by the data_prep pipeline (real recordings with the bitrate rule relaxed and
clips stored at 512 px, plus a generated corpus), with cached latents from a tiny VAE. Prints JSON.

Usage: python benchmarks/loader_throughput.py [--workdir DIR] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import webdataset as wds
from torch.utils.data import DataLoader

from data_prep.run import load_config as prep_config
from data_prep.run import run as prep_run
from data_prep.synthetic.corpus import generate_corpus
from trainer.config.compose import load_train_config
from trainer.data.buckets import Compression
from trainer.data.datamodule import TalkingHeadDataModule
from trainer.data.plan import _decode_frames
from trainer.data.schema import FeatureSpec
from trainer.lightning_module import TalkingHeadModule

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
TINY_VAE = [
    "features.vae_latents=true",
    "features.vae.source=random",
    "+features.vae.arch.latent_channels=8",
    "+features.vae.arch.block_out_channels=[8,8,8,8]",
    "+features.vae.arch.decoder_block_out_channels=[8,8,8,8]",
    "+features.vae.arch.layers_per_block=[1,1,1,1,1]",
    "+features.vae.arch.decoder_layers_per_block=[1,1,1,1,1]",
]


def build_shards(work: Path) -> Path:
    """Run data_prep over the real recordings (when present) and a generated corpus."""
    videos = work / "videos"
    generate_corpus(videos / "generated", 4, seed=11, duration_s=10.0, width=256, height=256)
    if REAL.is_dir():
        for name in ("demo1_video.mp4", "demo2_video.mp4"):
            target = videos / "real" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(REAL / name)
    out = work / "prep"
    overrides = [
        f"input_dir={videos}",
        f"output_dir={out}",
        "audio=tiny",
        "probe.min_bitrate_kbps=0",
        "faces.min_face_px=64",
        "sync.enabled=false",
        "quality.enabled=false",
        "clips.max_long_side=512",
        "execution.videos_per_unit=1",
        "execution.samples_per_shard=2",
        *TINY_VAE,
    ]
    prep_run(prep_config(overrides))
    return out / "shards"


def decode_rate(shards: Path, work: Path, rounds: int = 5) -> dict:
    """(a): frames/s of the loader's decoding path and of ffmpeg on the same clip files."""
    clips = work / "clips"
    clips.mkdir(exist_ok=True)
    records = []
    ds = wds.WebDataset(
        [str(p) for p in sorted(shards.glob("*.tar"))],
        shardshuffle=False,
        nodesplitter=None,
        workersplitter=None,
        empty_check=False,
    )
    for raw in ds:
        rec = json.loads(raw["json"])
        path = clips / f"{raw['__key__']}.mp4"
        path.write_bytes(raw["video.mp4"])
        records.append((raw, rec, path))
    frames = sum(r["num_frames"] for _, r, _ in records)

    class _Plan:  # the fields the decoding helper reports errors with
        shard, key = "bench", "bench"

    def ours() -> float:
        t = time.perf_counter()
        for raw, rec, _ in records:
            hw = (rec["height"], rec["width"])
            arr, _, _ = _decode_frames(raw["video.mp4"], list(range(rec["num_frames"])), hw, hw, _Plan, "video.mp4")
            torch.from_numpy(arr)  # the loader hands uint8 [F, H, W, 3] tensors on; layout changes happen on device
        return time.perf_counter() - t

    # One ffmpeg process decodes every clip (one null output per input), so process start-up is paid once.
    cmd = [shutil.which("ffmpeg"), "-v", "error"]
    for _, _, path in records:
        cmd += ["-threads", "1", "-i", str(path)]
    for i in range(len(records)):
        cmd += ["-map", f"{i}:v", "-f", "null", "-"]

    def theirs() -> float:
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        return time.perf_counter() - t

    # Alternating rounds, medians: machine noise hits both alike.
    ours_s, theirs_s = [], []
    for _ in range(rounds):
        ours_s.append(ours())
        theirs_s.append(theirs())
    ours_t, theirs_t = statistics.median(ours_s), statistics.median(theirs_s)
    return {
        "clips": len(records),
        "frames": frames,
        "rounds": rounds,
        "loader_decode_frames_per_s": round(frames / ours_t, 1),
        "ffmpeg_null_frames_per_s": round(frames / theirs_t, 1),
        "ratio_loader_over_ffmpeg": round(theirs_t / ours_t, 3),
        "target_ratio_min": 0.8,
    }


def memory_mib(pid: int) -> dict:
    """Peak resident memory (VmHWM) and private memory now (USS, what the worker does not share) in MiB."""
    hwm = next(
        int(x.split()[1]) for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:")
    )
    private = sum(
        int(x.split()[1])
        for x in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        if x.startswith(("Private_Clean:", "Private_Dirty:"))
    )
    return {"peak_rss": round(hwm / 1024, 1), "private": round(private / 1024, 1)}


def stream_vs_step(shards: Path, steps: int, tmp: Path) -> dict:
    """(b) and (c): loader samples/s with cached latents vs a tiny training step, and worker memory."""
    # The stored sizes (256x256 generated, 288x512 real) both divide this budget (256x256: 12 latent frames x
    # 3 clips; 288x512: 16 x 1), so every sample trains from its cached latents at its stored size.
    cfg = load_train_config(
        [
            "experiment=smoke",
            f"data.shards={shards}/*.tar",
            "data.max_frames=121",
            "data.tokens_per_batch=2304",
            "data.min_megapixels=0.06",
            "data.max_megapixels=0.15",
            "data.num_workers=4",
            "objective.num_reference_frames=6",
            f"run_dir={tmp}/run",
        ]
    )
    dm = TalkingHeadDataModule(
        cfg.data, FeatureSpec(5, 32), cfg.objective.num_reference_frames, Compression.of(cfg.model.vae)
    )
    loader: DataLoader = dm.train_dataloader()
    it = iter(loader)
    first = next(it)  # workers started, first batch built
    cached = "latents" in first
    t, samples = time.perf_counter(), 0
    batches = [first]
    for _ in range(steps):
        b = next(it)
        samples += len(b["keys"])
        batches.append(b)
    load_rate = samples / (time.perf_counter() - t)
    memory = [memory_mib(w.pid) for w in getattr(it, "_workers", [])]
    del it
    module = TalkingHeadModule(cfg)
    module.dit.train()
    opt = module.configure_optimizers()["optimizer"]
    gen = torch.Generator().manual_seed(0)
    t, samples = time.perf_counter(), 0
    for b in batches[1:]:
        loss = module.compute_loss(module.prepare_step(b, gen)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        samples += len(b["keys"])
    step_rate = samples / (time.perf_counter() - t)
    return {
        "cached_latents": cached,
        "workers": loader.num_workers,
        "loader_samples_per_s": round(load_rate, 2),
        "training_step_samples_per_s": round(step_rate, 2),
        "ratio_loader_over_step": round(load_rate / step_rate, 3),
        "target_ratio_min": 3.0,
        "worker_memory_mib": memory,
    }


def main() -> None:
    """Build the shards, run (a)-(c), print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--stream-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.stream_only is not None:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(stream_vs_step(args.stream_only, args.steps, Path(tmp))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        shards = build_shards(work)
        decode = decode_rate(shards, work)
        # (b) and (c) run in a fresh process: dataloader workers fork from their parent, and this one has
        # held the data_prep models, which would inflate the workers' memory.
        out = subprocess.run(
            [sys.executable, __file__, "--stream-only", str(shards), "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        stream = json.loads(out.stdout.strip().splitlines()[-1])
    result = {"benchmark": "loader_throughput", "real_recordings": REAL.is_dir(), "decode": decode, "stream": stream}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
