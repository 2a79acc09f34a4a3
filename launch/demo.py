"""``make demo``: the whole recipe on the embedded default, end to end, on a CPU.

generate a corpus of synthetic talking heads → data_prep pipeline (probe, decode, scenes, faces, clips,
features, ledger) → shards → stage 1 (audio adapter) → export →
stage 2 (LoRA + adapter, starting from the stage-1 adapter) → export → a short stage-2 run on 2 processes
with DeepSpeed ZeRO-2 (CPU, gloo) and Ulysses sequence parallelism → sampling one V2V clip and one edited
clip from the stage-2 checkpoint, with the metrics whose weights are present. Tiny random models; no network,
no account. Usage: ``python -m launch.demo [out_dir=demo_out] [key=value ...]``.
"""

from __future__ import annotations

import csv
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from launch.run_dir import metrics_files
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config, register_schema


@dataclass
class DemoConfig:
    """Options of the demo (``key=value`` on the command line).

    Attributes:
        num_videos: Synthetic talking-head videos in the corpus.
        duration_s: Length of each video, seconds.
        size: Frame height and width of the corpus, pixels.
        clip_frames: Frames per training clip (8k+1).
        seed: Seed of the corpus and of every run.
        stage1_steps: Optimizer steps of stage 1 (the audio adapter).
        stage2_steps: Optimizer steps of stage 2 (LoRA + adapter).
        scale_overrides: Trainer overrides of the scale step (strategy and sequence parallelism).
    """

    out_dir: str = "demo_out"  # corpus and shards are kept here and reused; each run gets runs/<timestamp>
    num_videos: int = 6
    duration_s: float = 4.0
    fps: list[float] = field(default_factory=lambda: [25.0, 30.0])  # the corpus mixes frame rates
    size: int = 128
    clip_frames: int = 25
    seed: int = 0
    stage1_steps: int = 120
    # Validation during stage 1 every this many steps (held-out loss at fixed t, one sampled clip); the
    # demo has no held-out split, so it validates on the training shards. 0 turns it off.
    validate_every: int = 60
    stage2_steps: int = 60
    # The scale step: stage 2 again on 2 processes that shard the optimiser (ZeRO-2) and each sample's
    # tokens (Ulysses); 0 steps skips it.
    scale_steps: int = 10
    scale_overrides: list[str] = field(default_factory=lambda: ["strategy=deepspeed_cpu", "parallel=ulysses"])
    # Sampling from the stage-2 checkpoint: one V2V clip and one edited clip (an inserted latent frame),
    # with the metrics whose weights are present; 0 steps skips it.
    sample_steps: int = 8
    train_overrides: list[str] = field(default_factory=list)  # extra trainer overrides for every training run
    prep_overrides: list[str] = field(default_factory=list)  # extra data_prep overrides


def _loss_trend(run_dir: Path) -> str:
    """First and last logged training loss of a run (from its CSV log)."""
    losses = []
    for path in metrics_files(run_dir):
        with open(path) as fh:
            losses += [float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    if not losses:
        return "no loss logged"
    q = max(1, len(losses) // 4)  # single-step losses are noisy (a new t each step): compare quarters
    first, last = sum(losses[:q]) / q, sum(losses[-q:]) / q
    return f"mean loss of the first/last {q} logged steps {first:.3f} -> {last:.3f}"


def _validation_summary(run_dir: Path) -> str:
    """The held-out loss of each validation of a run and where its sampled clips are."""
    rows = []
    for path in metrics_files(run_dir):
        with open(path) as fh:
            rows += [r for r in csv.DictReader(fh) if r.get("val/loss")]
    if not rows:
        return ""
    losses = ", ".join(f"step {int(r['step']) + 1}: {float(r['val/loss']):.3f}" for r in rows)
    return f"; validation loss {losses}, clips in {run_dir / 'validation'}"


def _stage_overrides(cfg: DemoConfig, shards: str, run_dir: Path, steps: int) -> list[str]:
    return [
        "experiment=demo",
        f"data.shards={shards}",
        f"data.max_frames={cfg.clip_frames}",
        # Multi-resolution: clips are resized at random between half and full corpus size; the budget is
        # 3 full-size clips per batch (at 128 px: buckets 128x128 x 3 clips and 64x64 x 12 clips).
        f"data.tokens_per_batch={3 * ((cfg.clip_frames - 1) // 8 + 1) * (cfg.size // 32) ** 2}",
        f"data.min_megapixels={(cfg.size // 2) ** 2 / 1e6}",
        f"data.max_megapixels={cfg.size * cfg.size / 1e6}",
        f"loop.max_steps={steps}",
        f"run_dir={run_dir}",
        *cfg.train_overrides,
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_in_processes(overrides: list[str], log_file: Path) -> None:
    """``python -m trainer.train`` as a child process; Lightning starts the other ranks as copies of it.

    A child, not this process: Lightning launches extra ranks by rerunning the parent's command line.

    Raises:
        RuntimeError: The run failed (with the tail of its log).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    with open(log_file, "w") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "trainer.train", *overrides], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    if done.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"training run failed (exit {done.returncode}), log {log_file}:\n{tail}")


def _sample_from(checkpoint: Path, shards: str, out: Path, steps: int, seed: int) -> dict:
    """Sample one V2V clip and one edited clip (a latent frame inserted after the first) and score them."""
    from eval.metrics import MetricWeights, compute_metrics
    from eval.run import clip_batch, load_module, read_clips, sample_clip, sample_edited_clip
    from eval.sampler.editing import Edit
    from eval.sampler.sampler import EulerSampler, SamplerConfig
    from eval.sampler.video_out import write_sample

    module = load_module(checkpoint)
    sampler = EulerSampler(module.dit, SamplerConfig(num_steps=steps, seed=seed), module.cfg.objective.timestep_loc)
    clip, audio, sr = read_clips(shards, module.cfg, 1)[0]
    batch = clip_batch(clip, module.cfg.objective.num_reference_frames)
    weights = MetricWeights.from_env()
    v2v = sample_clip(module, sampler, batch, "v2v", "lip", True, seed)
    write_sample(out / "v2v.mp4", v2v, clip.fps, audio, sr)
    scores = compute_metrics(v2v, clip.frames, audio, clip.fps, weights, sr, clip.ref_frames[0])
    # 8 frames of new, silent content after the first frame: the visual-dialog "addition".
    edit = Edit("add", start_s=8 / clip.fps, duration_s=8 / clip.fps)
    edited, drive = sample_edited_clip(module, sampler, batch, [edit], audio, sr, seed)
    write_sample(out / "edited.mp4", edited, clip.fps, drive, sr)
    edited_scores = compute_metrics(edited, clip.frames, drive, clip.fps, weights, sr, clip.ref_frames[0])

    def fmt(values) -> str:
        got = {k: v for k, v in values.items() if v is not None}
        return ", ".join(f"{k} {v:.3f}" for k, v in got.items()) or "none"

    missing = sorted(set(scores.skipped) & set(edited_scores.skipped))
    report = [
        f"v2v {out / 'v2v.mp4'} ({v2v.shape[0]} frames): {fmt(scores)}",
        f"edited {out / 'edited.mp4'} ({edited.shape[0]} frames, +8 inserted): {fmt(edited_scores)}",
        "not computed (no weights here, or no face the metric can use in a tiny random model's output):",
        *[f"  {k}: {' '.join(scores.skipped[k].split())[:110]}" for k in missing],
    ]
    return {"v2v": out / "v2v.mp4", "edited": out / "edited.mp4", "report": report}


def run_demo(cfg: DemoConfig) -> dict[str, Path]:
    """Run every step of the demo and return where each output is."""
    from data_prep.ledger import read_ledger
    from data_prep.run import load_config as load_prep_config
    from data_prep.run import run as run_prep
    from data_prep.synthetic.corpus import generate_corpus
    from trainer.config.compose import load_train_config
    from trainer.export import export_checkpoint
    from trainer.runner import train
    from trainer.train import run

    # Lightning resets its logger to INFO when imported; the demo prints where things are instead.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    out = Path(cfg.out_dir)
    runs = out / "runs" / time.strftime("%Y%m%d-%H%M%S")
    data = out / "data"
    prep_dir = data / f"prep_{cfg.num_videos}v_{cfg.size}px_{cfg.clip_frames}f_seed{cfg.seed}"
    shards = f"{prep_dir}/shards/*.tar"

    t0 = time.perf_counter()
    corpus = data / "corpus"
    entries = generate_corpus(
        corpus,
        cfg.num_videos,
        seed=cfg.seed,
        fps_choices=tuple(cfg.fps),
        duration_s=cfg.duration_s,
        width=cfg.size,
        height=cfg.size,
    )
    print(f"[1/8] corpus: {len(entries)} synthetic talking-head videos in {corpus} ({time.perf_counter() - t0:.0f}s)")

    stage1_overrides = _stage_overrides(cfg, shards, runs / "stage1", cfg.stage1_steps)
    if cfg.validate_every > 0:
        stage1_overrides += [
            f"validation.every_n_steps={cfg.validate_every}",
            f"validation.shards={shards}",
            "validation.num_clips=1",
            "validation.loss_batches=1",
            "validation.sample_steps=4",
        ]
    stage1_cfg = load_train_config(stage1_overrides)  # fail on a bad override before any work
    scaled = runs / "stage2_zero2_ulysses" if cfg.scale_steps > 0 else None
    if scaled is not None:
        scaled_overrides = _stage_overrides(cfg, shards, scaled, cfg.scale_steps) + cfg.scale_overrides
        # stage2_lora needs its adapter_init only once stage 1 has exported it; check the rest now.
        load_train_config(scaled_overrides)
        scaled_overrides.append("stage=stage2_lora")
    # The data_prep pipeline (its demo filters: no SyncNet/HyperIQA weights here) turns the corpus into
    # shards; finished units are skipped when the demo runs again.
    prep_cfg = load_prep_config(
        [
            f"input_dir={corpus}",
            f"output_dir={prep_dir}",
            "filters=demo",
            f"audio={stage1_cfg.audio.name}",
            f"clips.num_frames={cfg.clip_frames}",
            f"clips.stride_frames={cfg.clip_frames}",
            f"features.num_reference_frames={stage1_cfg.objective.num_reference_frames}",
            *cfg.prep_overrides,
        ]
    )
    summary = run_prep(prep_cfg)
    clips = [r for r in read_ledger(prep_dir / "ledger.parquet").to_pylist() if r["kind"] == "clip"]
    kept = sum(r["status"] == "kept" for r in clips)
    print(
        f"[2/8] data_prep: {summary['videos']} videos -> {kept} of {len(clips)} clip candidates kept, in "
        f"{prep_dir / 'shards'}; ledger {prep_dir / 'ledger.parquet'}, report {prep_dir / 'report.md'} "
        f"({time.perf_counter() - t0:.0f}s)"
    )

    stage1 = train(stage1_cfg)
    print(
        f"[3/8] stage 1 (audio adapter): {stage1.run_dir}, {_loss_trend(stage1.run_dir)}"
        f"{_validation_summary(stage1.run_dir)} ({time.perf_counter() - t0:.0f}s)"
    )
    export1 = runs / "stage1_export"
    export_checkpoint(stage1.last_checkpoint, export1)
    print(f"[4/8] stage-1 adapter exported to {export1}")

    stage2 = run(
        _stage_overrides(cfg, shards, runs / "stage2", cfg.stage2_steps)
        + ["stage=stage2_lora", f"stage.adapter_init={export1}"]
    )
    print(
        f"[5/8] stage 2 (LoRA + adapter): {stage2.run_dir}, {_loss_trend(stage2.run_dir)} "
        f"({time.perf_counter() - t0:.0f}s)"
    )
    export2 = runs / "export"
    files = export_checkpoint(stage2.last_checkpoint, export2)
    print(f"[6/8] stage-2 export in {export2} ({time.perf_counter() - t0:.0f}s)")

    if scaled is not None:
        _train_in_processes(scaled_overrides + [f"stage.adapter_init={export1}"], scaled / "train.log")
        print(
            f"[7/8] stage 2 on 2 processes ({', '.join(cfg.scale_overrides)}): {scaled}, {_loss_trend(scaled)} "
            f"({time.perf_counter() - t0:.0f}s)"
        )

    samples = None
    if cfg.sample_steps > 0:
        samples = _sample_from(stage2.last_checkpoint, shards, runs / "samples", cfg.sample_steps, cfg.seed)
        print(f"[8/8] samples from the stage-2 checkpoint in {runs / 'samples'} ({time.perf_counter() - t0:.0f}s)")
        for line in samples["report"]:
            print(f"      {line}")

    outputs = {
        "corpus": corpus,
        "data_prep": prep_dir,
        "ledger": prep_dir / "ledger.parquet",
        "report": prep_dir / "report.md",
        "shards": prep_dir / "shards",
        "stage1_run": stage1.run_dir,
        "stage1_checkpoint": stage1.last_checkpoint,
        "stage1_export": export1,
        "stage2_run": stage2.run_dir,
        "stage2_checkpoint": stage2.last_checkpoint,
        **{f"export_{k}": v for k, v in files.items()},
    }
    if samples is not None:
        outputs["sample_v2v"] = samples["v2v"]
        outputs["sample_edited"] = samples["edited"]
    if scaled is not None:
        outputs["scaled_run"] = scaled
        outputs["scaled_checkpoint"] = scaled / "checkpoints" / "last.ckpt"
    print("\nOutputs:")
    for name, path in outputs.items():
        print(f"  {name:28s} {path}")
    return outputs


def register() -> None:
    """Register :class:`DemoConfig` as the config ``demo`` (composed like every entry point's)."""
    register_schema("demo", DemoConfig)


COMMAND = Command(
    module="launch.demo",
    config_name="demo",
    summary="""The whole recipe on the embedded default, end to end, on a CPU: a synthetic talking-head corpus,
the data_prep pipeline, stage 1 with validation, export, stage 2, export, a short 2-process run (DeepSpeed ZeRO-2
on the CPU with Ulysses sequence parallelism), and sampling from the stage-2 checkpoint. Outputs go to out_dir
(data/ is reused by later demos; each run gets runs/<timestamp>/).""",
    examples=("python -m launch.demo", "python -m launch.demo num_videos=8 stage1_steps=200 size=256"),
    register=register,
)


def _demo(overrides: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    register()
    run_demo(load_config("demo", overrides))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point; bad options exit with status 2."""
    return run_command(COMMAND, argv, _demo)


if __name__ == "__main__":
    sys.exit(main())
