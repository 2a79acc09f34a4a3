"""``make demo``: the whole recipe on the embedded default, end to end, on a CPU — and proof that it learns.

synthetic talking heads → data_prep (probe, decode, scenes, faces, clips, features, ledger) → shards →
talkdit's pretrained tiny base (a fitted LTX-architecture VAE, a tiny T5 and a base-stage DiT written as a
diffusers folder in the LTX-Video layout; fitted once, then reused from ``out_dir``) → stage 1 (audio
adapter) → export → stage 2 (LoRA + adapter) → export → a short stage-2 run on 2 processes with DeepSpeed
ZeRO-2 (CPU, gloo) and Ulysses sequence parallelism → a V2V clip and an edited clip from the stage-2
checkpoint → a held-out person (never trained on) dubbed with another person's speech, next to the exact
video a perfect dub would be, with the lip-sync benchmark's numbers for that clip → raw files dubbed with
``python -m eval.dub`` from the stage-2 export: a held-out person's video, and a real recording of
``../shared/data/real`` when present (``dub_real``). No network, no account.
Usage: ``python -m launch.demo [out_dir=demo_out] [key=value ...]``.

The options are :class:`launch.demo_config.DemoConfig`; the sampling and dubbing steps from the stage-2
checkpoint are :mod:`launch.demo_samples`.
"""

from __future__ import annotations

import csv
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from launch.corpus import CorpusSpec, PreparedCorpus, prepare_corpus
from launch.demo_config import HELDOUT_SEED, DemoConfig, register
from launch.demo_samples import dub_files, dub_heldout, sample_from
from launch.tiny_base import TinyBaseConfig, build_tiny_base, latent_shards
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config
from trainer.config.errors import ConfigError
from trainer.config.schema import VAEConfig
from trainer.data.buckets import Compression
from trainer.run_dir import metrics_files

DEMO_BATCH = 8  # clips per training batch: the token budget is 8 whole clips at the demo's size


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


def _stage_overrides(cfg: DemoConfig, shards: str, base: Path, run_dir: Path, steps: int) -> list[str]:
    """Trainer overrides of a demo stage on the tiny base (``experiment=demo`` holds the rest)."""
    vae = Compression.of(VAEConfig())  # model=tiny_base keeps the schema's (LTX-Video's) factors
    return [
        "experiment=demo",
        f"data.shards={shards}",
        f"model.transformer.path={base}",
        f"data.max_frames={cfg.clip_frames}",
        f"data.tokens_per_batch={DEMO_BATCH * vae.latent_frames(cfg.clip_frames) * (cfg.size // vae.spatial) ** 2}",
        f"data.min_megapixels={cfg.size * cfg.size / 1e6}",
        f"data.max_megapixels={cfg.size * cfg.size / 1e6}",
        f"loop.max_steps={steps}",
        f"run_dir={run_dir}",
        f"seed={cfg.seed}",
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


def _latents_of(corpus: PreparedCorpus, base: Path, data: Path) -> str:
    """The corpus's shards with the VAE latents of the tiny base ``base`` added (once; finished shards are reused).

    Returns:
        The glob of the shards with latents, under ``data/latents/<corpus>_<base>``.
    """
    from data_prep.latents import LatentsConfig, add_latents
    from trainer.config.schema import VAEConfig

    out = data / "latents" / f"{corpus.prep.parent.name}_{base.parent.name}"
    vae = VAEConfig(source="diffusers", path=str(base), subfolder="vae")
    add_latents(LatentsConfig(shards=corpus.shards, output_dir=str(out), vae=vae))
    return f"{out}/*.tar"


def run_demo(cfg: DemoConfig) -> dict[str, Path]:
    """Run every step of the demo and return where each output is."""
    if cfg.vae_decoder_steps < 0:  # before minutes of corpus preparation, not when the base is built
        raise ConfigError("vae_decoder_steps", cfg.vae_decoder_steps, "expected >= 0 (0: no decoder refinement)")
    from data_prep.ledger import read_ledger
    from trainer.config.compose import load_train_config
    from trainer.export import export_checkpoint
    from trainer.runner import train
    from trainer.stage_model import load_trained_model

    # Lightning resets its logger to INFO when imported; the demo prints where things are instead.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    out = Path(cfg.out_dir)
    runs = out / "runs" / time.strftime("%Y%m%d-%H%M%S")
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    spec = CorpusSpec(
        num_videos=cfg.num_videos,
        seed=cfg.seed,
        fps=list(cfg.fps),
        duration_s=cfg.duration_s,
        size=cfg.size,
        zoom=cfg.zoom,
        clip_frames=cfg.clip_frames,
        prep_overrides=list(cfg.prep_overrides),
    )
    held_spec = CorpusSpec(
        **{**spec.__dict__, "num_videos": cfg.heldout_videos, "seed": HELDOUT_SEED + cfg.seed, "fps": [25.0]}
    )
    # The people stages 1 and 2 learn from; the tiny base is fitted on `spec`'s.
    adapter_spec = CorpusSpec(**{**spec.__dict__, "seed": cfg.seed + 1}) if cfg.fresh_people else spec

    # Fail on a bad override before any work (the base folder does not exist yet: any folder stands in).
    stage1_overrides = _stage_overrides(cfg, "<shards>", data, runs / "stage1", cfg.stage1_steps)
    load_train_config([o.replace("<shards>", "unused") for o in stage1_overrides])
    scaled = runs / "stage2_zero2_ulysses" if cfg.scale_steps > 0 else None

    t0 = time.perf_counter()
    base_set = prepare_corpus(spec, data / "corpora")
    train_set = prepare_corpus(adapter_spec, data / "corpora") if cfg.fresh_people else base_set
    held = prepare_corpus(held_spec, data / "corpora")
    clips = [r for r in read_ledger(train_set.prep / "ledger.parquet").to_pylist() if r["kind"] == "clip"]
    kept = sum(r["status"] == "kept" for r in clips)
    base_people = f"; the tiny base's {cfg.num_videos} other people in {base_set.shards}" if cfg.fresh_people else ""
    print(
        f"[1/10] corpus + data_prep: {cfg.num_videos} synthetic people -> {kept} of {len(clips)} clip candidates "
        f"kept, shards {train_set.prep / 'shards'}, ledger {train_set.prep / 'ledger.parquet'}, report "
        f"{train_set.prep / 'report.md'}{base_people}; {cfg.heldout_videos} held-out people in "
        f"{held.prep / 'shards'} ({time.perf_counter() - t0:.0f}s)"
    )

    base_cfg = TinyBaseConfig(
        shards=base_set.shards,
        out_dir=str(
            data / "tiny_base" / f"{spec.name()}_vae{cfg.vae_image_steps}-{cfg.vae_clip_steps}_dit{cfg.base_steps}"
        ),
        vae_image_steps=cfg.vae_image_steps,
        vae_clip_steps=cfg.vae_clip_steps,
        vae_decoder_steps=cfg.vae_decoder_steps,
        # The refined decoder also sees the adapter's people (never the held-out ones): the decoder's data, not
        # its steps, limited how well it drew the mouths the DiT makes (issue 10: r 0.645 -> 0.667 probed).
        decoder_shards=f"{base_set.shards},{train_set.shards}" if cfg.fresh_people else "",
        base_steps=cfg.base_steps,
        base_overrides=list(cfg.base_overrides),
        seed=cfg.seed,
    )
    base = build_tiny_base(base_cfg)
    # The training shards with the base VAE's latents: stages 1 and 2 never run the VAE on training clips.
    shards = latent_shards(base_cfg) if not cfg.fresh_people else _latents_of(train_set, base, data)
    print(
        f"[2/10] pretrained tiny base (VAE + T5 + base-stage DiT, diffusers folder): {base} "
        f"({time.perf_counter() - t0:.0f}s)"
    )

    stage1_overrides = _stage_overrides(cfg, shards, base, runs / "stage1", cfg.stage1_steps)
    if cfg.validate_every > 0:
        stage1_overrides += [
            f"validation.every_n_steps={cfg.validate_every}",
            f"validation.shards={held.shards}",
            "validation.num_clips=1",
            "validation.loss_batches=1",
            "validation.sample_steps=4",
        ]
    stage1 = train(load_train_config(stage1_overrides))
    print(
        f"[3/10] stage 1 (audio adapter on the tiny base): {stage1.run_dir}, {_loss_trend(stage1.run_dir)}"
        f"{_validation_summary(stage1.run_dir)} ({time.perf_counter() - t0:.0f}s)"
    )
    export1 = runs / "stage1_export"
    export_checkpoint(stage1.last_checkpoint, export1)
    print(f"[4/10] stage-1 adapter exported to {export1}")

    stage2_overrides = _stage_overrides(cfg, shards, base, runs / "stage2", cfg.stage2_steps)
    stage2 = train(
        load_train_config(
            stage2_overrides + ["stage=stage2_lora", f"stage.adapter_init={export1}", *cfg.stage2_overrides]
        )
    )
    print(
        f"[5/10] stage 2 (LoRA + adapter): {stage2.run_dir}, {_loss_trend(stage2.run_dir)} "
        f"({time.perf_counter() - t0:.0f}s)"
    )
    export2 = runs / "export"
    files = export_checkpoint(stage2.last_checkpoint, export2)
    print(f"[6/10] stage-2 export in {export2} ({time.perf_counter() - t0:.0f}s)")

    if scaled is not None:
        scaled_overrides = _stage_overrides(cfg, shards, base, scaled, cfg.scale_steps) + [
            *cfg.scale_overrides,
            "stage=stage2_lora",
            f"stage.adapter_init={export1}",
            *cfg.stage2_overrides,
        ]
        _train_in_processes(scaled_overrides, scaled / "train.log")
        print(
            f"[7/10] stage 2 on 2 processes ({', '.join(cfg.scale_overrides)}): {scaled}, {_loss_trend(scaled)} "
            f"({time.perf_counter() - t0:.0f}s)"
        )

    outputs = {
        "corpus": train_set.corpus,
        "data_prep": train_set.prep,
        "ledger": train_set.prep / "ledger.parquet",
        "report": train_set.prep / "report.md",
        "shards": train_set.prep / "shards",
        "heldout_shards": held.prep / "shards",
        "base_shards": base_set.prep / "shards",
        "base_model": base,
        "stage1_run": stage1.run_dir,
        "stage1_checkpoint": stage1.last_checkpoint,
        "stage1_export": export1,
        "stage2_run": stage2.run_dir,
        "stage2_checkpoint": stage2.last_checkpoint,
        **{f"export_{k}": v for k, v in files.items()},
    }
    if scaled is not None:
        outputs["scaled_run"] = scaled
        outputs["scaled_checkpoint"] = scaled / "checkpoints" / "last.ckpt"
    if cfg.sample_steps > 0:
        model, stage2_cfg = load_trained_model(stage2.last_checkpoint)
        samples = sample_from(model, stage2_cfg, held.shards, runs / "samples", cfg.sample_steps, cfg.seed)
        print(f"[8/10] samples from the stage-2 checkpoint in {runs / 'samples'} ({time.perf_counter() - t0:.0f}s)")
        for line in samples["report"]:
            print(f"      {line}")
        dub = dub_heldout(model, stage2_cfg, held, runs / "samples", cfg.sample_steps, cfg.seed)
        n = dub["scores"]
        print(
            f"[9/10] a held-out person dubbed with another person's speech: {dub['dub']} (ground truth "
            f"{dub['ground_truth']}; source | dub | ground truth | base in {dub['strip']}) "
            f"({time.perf_counter() - t0:.0f}s)"
        )
        print(
            f"      mouth-region MSE vs the ground truth: dub {n['mouth_mse_trained']:.1f}, base "
            f"{n['mouth_mse_base']:.1f}, undubbed source {n['mouth_mse_source']:.1f}, VAE ceiling "
            f"{n['mouth_mse_vae_ceiling']:.1f} (gap closed {_fmt(n['gap_closed'])}); mouth opening follows the "
            f"speech: r = {_fmt(n['openness_corr_trained'])} (base {_fmt(n['openness_corr_base'])}, measure check "
            f"{_fmt(n['openness_measure_check'])}); whole-frame PSNR {n['psnr_trained_db']:.1f} dB, neighbouring-pixel "
            f"correlation {_fmt(n['neighbour_corr_trained'])} (source {_fmt(n['neighbour_corr_source'])})"
        )
        outputs.update(
            {
                "sample_v2v": samples["v2v"],
                "sample_edited": samples["edited"],
                "dub_video": dub["dub"],
                "dub_ground_truth": dub["ground_truth"],
                "dub_strip": dub["strip"],
            }
        )
    if cfg.sample_steps > 0 and cfg.dub_seconds > 0:
        dubs = dub_files(cfg, held, base, export2, runs / "dubs")
        real_note = "" if "dub_real" in dubs else f" (no real recordings in {cfg.real_dir}: dub_real skipped)"
        print(
            f"[10/10] raw files dubbed with `python -m eval.dub` from the stage-2 export ({cfg.dub_seconds:g} s "
            f"each): {', '.join(str(p) for p in dubs.values())}{real_note} ({time.perf_counter() - t0:.0f}s)"
        )
        outputs.update(dubs)
    print("\nOutputs:")
    for name, path in outputs.items():
        print(f"  {name:28s} {path}")
    return outputs


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


COMMAND = Command(
    module="launch.demo",
    config_name="demo",
    summary="""The whole recipe on the embedded default, end to end, on a CPU: a synthetic talking-head corpus,
the data_prep pipeline, stage 1 with validation, export, stage 2, export, a short 2-process run (DeepSpeed ZeRO-2
on the CPU with Ulysses sequence parallelism), sampling from the stage-2 checkpoint, and raw videos (a held-out
synthetic person, a real recording of real_dir when present) dubbed through eval.dub. Outputs go to out_dir
(data/ is reused by later demos; each run gets runs/<timestamp>/).""",
    examples=("python -m launch.demo", "python -m launch.demo num_videos=8 stage1_steps=200 size=256"),
    register=register,
)


def _demo(overrides: list[str]) -> int:
    # Each step's line must reach a log file as it happens (`make demo > demo.log`), not when the demo ends.
    sys.stdout.reconfigure(line_buffering=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    # talkdit's own progress lines (VAE fit, training steps, data_prep units): the tiny base takes minutes.
    logging.getLogger("talkdit").setLevel(logging.INFO)
    register()
    run_demo(load_config("demo", overrides))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point; bad options exit with status 2."""
    return run_command(COMMAND, argv, _demo)


if __name__ == "__main__":
    sys.exit(main())
