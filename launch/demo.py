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
"""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from launch.corpus import CorpusSpec, PreparedCorpus, prepare_corpus
from launch.tiny_base import TinyBaseConfig, build_tiny_base, latent_shards
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config, register_schema
from trainer.config.errors import ConfigError
from trainer.config.schema import VAEConfig
from trainer.data.buckets import Compression
from trainer.run_dir import metrics_files

# Held-out people: a corpus seed the training corpus never uses, 25 fps so clip frames are source frames.
HELDOUT_SEED = 1000
DEMO_BATCH = 8  # clips per training batch: the token budget is 8 whole clips at the demo's size
REPO = Path(__file__).resolve().parents[1]
# The real recording the demo dubs, and whose speech drives it (the other recording's).
REAL_VIDEO, REAL_SPEECH = "demo1_video.mp4", "demo2_audio.wav"


@dataclass
class DemoConfig:
    """Options of the demo (``key=value`` on the command line).

    Attributes:
        out_dir: Corpora, shards and the tiny base are kept here and reused; each run gets ``runs/<timestamp>``.
        num_videos: Synthetic people (one video each) of the tiny base's corpus, and of the adapter's with
            ``fresh_people``.
        heldout_videos: People never trained on: the dub and its benchmark numbers.
        duration_s: Length of each video, seconds.
        fps: Frame rates the corpus mixes (clips are resampled to 25 fps by data_prep).
        size: Frame height and width of the corpus, pixels.
        zoom: Face-centred framing (1 = head and shoulders); lip-sync models are trained on close crops, and the
            tiny VAE resolves a mouth only when it spans enough pixels.
        clip_frames: Frames per training clip (8k+1).
        seed: Seed of the tiny base's corpus and of every run.
        fresh_people: Stages 1 and 2 train on a second corpus (seed ``seed + 1``) of people the tiny base never
            saw, as a pretrained base has never seen the fine-tuning set; a base fitted on the adapter's own clips
            has learned their mouths and leaves the adapter little to learn (false: train on the base's corpus).
        vae_image_steps: Tiny-base VAE fit steps on single frames.
        vae_clip_steps: Tiny-base VAE fit steps on clips and mouth crops.
        vae_decoder_steps: Steps refining the tiny base VAE's decoder alone (0: none; the latents, and so the
            base DiT, stay as they are: :mod:`launch.tiny_base`).
        base_steps: Base-stage steps of the tiny DiT.
        stage1_steps: Optimizer steps of stage 1 (the audio adapter).
        validate_every: Stage-1 validation every this many steps on the held-out people (0: off).
        stage2_steps: Optimizer steps of stage 2 (LoRA + adapter).
        stage2_overrides: Trainer overrides of stage 2 only (the tiny DiT takes a small LoRA at a low rate).
        scale_steps: Steps of the scale step, stage 2 on 2 processes (0 skips it).
        scale_overrides: Trainer overrides of the scale step (strategy and sequence parallelism).
        sample_steps: Euler steps of the samples and of the dubs (0 skips sampling and the dubs).
        dub_seconds: Seconds of speech the last step dubs through ``eval.dub`` (a held-out synthetic video, and a
            real recording of ``real_dir`` when it exists) from the stage-2 export; 0 skips that step.
        real_dir: Folder of real recordings (``demo1_video.mp4`` dubbed with ``demo2_audio.wav``); a relative path
            is taken from the repository root.
        train_overrides: Extra trainer overrides for stages 1 and 2.
        base_overrides: Extra trainer overrides for the base stage.
        prep_overrides: Extra data_prep overrides.
    """

    out_dir: str = "demo_out"
    num_videos: int = 48
    heldout_videos: int = 4
    duration_s: float = 4.0
    fps: list[float] = field(default_factory=lambda: [25.0, 30.0])
    size: int = 128
    zoom: float = 2.0
    clip_frames: int = 25
    seed: int = 0
    fresh_people: bool = True
    vae_image_steps: int = 800
    vae_clip_steps: int = 2400
    vae_decoder_steps: int = 0
    base_steps: int = 1500
    stage1_steps: int = 2000
    validate_every: int = 1000
    stage2_steps: int = 200
    # At stage 2's paper settings (rank 128, the demo's lr_adam 1e-3) the 4-block DiT diverged (loss 0.57 -> 1.0).
    stage2_overrides: list[str] = field(
        default_factory=lambda: ["optim.lr_adam=1e-4", "stage.lora.rank=16", "stage.lora.alpha=16"]
    )
    scale_steps: int = 10
    scale_overrides: list[str] = field(default_factory=lambda: ["strategy=deepspeed_cpu", "parallel=ulysses"])
    sample_steps: int = 16
    dub_seconds: float = 3.0
    real_dir: str = "../shared/data/real"
    train_overrides: list[str] = field(default_factory=list)
    base_overrides: list[str] = field(default_factory=list)
    prep_overrides: list[str] = field(default_factory=list)


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


def _sample_from(model, cfg, shards: str, out: Path, steps: int, seed: int) -> dict:
    """Sample one V2V clip and one edited clip (a latent frame inserted after the first) and score them."""
    from eval.clips import clip_batch, read_clips, sample_clip, sample_edited_clip
    from eval.metrics import MetricSuite, MetricWeights
    from eval.sampler.edit_plan import Edit
    from eval.sampler.sampler import EulerSampler, SamplerConfig
    from eval.sampler.video_out import write_sample

    sampler = EulerSampler(model.dit, SamplerConfig(num_steps=steps, seed=seed), cfg.objective.timestep_loc)
    clip, audio, sr = read_clips(shards, cfg, 1)[0]
    batch = clip_batch(clip, cfg.objective.num_reference_frames)
    metrics = MetricSuite(MetricWeights.from_env())
    v2v = sample_clip(model, cfg, sampler, batch, "v2v", "lip", True, seed)
    write_sample(out / "v2v.mp4", v2v, clip.fps, audio, sr)
    scores = metrics(v2v, clip.frames, audio, clip.fps, sr, clip.ref_frames[0])
    # 8 frames of new, silent content after the first frame: the visual-dialog "addition".
    edit = Edit("add", start_s=8 / clip.fps, duration_s=8 / clip.fps)
    edited, drive = sample_edited_clip(model, cfg, sampler, batch, [edit], audio, sr, seed)
    write_sample(out / "edited.mp4", edited, clip.fps, drive, sr)
    edited_scores = metrics(edited, clip.frames, drive, clip.fps, sr, clip.ref_frames[0])

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


def _dub_heldout(model, cfg, held, out: Path, steps: int, seed: int) -> dict:
    """Dub the first held-out clip with another person's speech; write it beside its ground truth and score it.

    Returns:
        Paths (``dub``, ``ground_truth``, ``strip``) and the benchmark's numbers for the clip (``scores``).
    """
    from eval.clips import read_clips
    from eval.lipsync.cases import dub_cases
    from eval.lipsync.dubs import base_model_of, run_cases
    from eval.lipsync.scores import summarize
    from eval.sampler.sampler import SamplerConfig
    from eval.sampler.video_out import write_sample

    clips = read_clips(held.shards, cfg, 8)
    case = dub_cases(clips, held.corpus)[0]
    base = base_model_of(cfg, model.device)
    ((videos, scores),) = run_cases(model, base, cfg, SamplerConfig(num_steps=steps, seed=seed), [case], seed)
    fps, audio, rate = case.source.fps, case.driving_audio, case.sample_rate
    paths = {"dub": out / "dub.mp4", "ground_truth": out / "dub_ground_truth.mp4", "strip": out / "dub_strip.png"}
    write_sample(paths["dub"], videos["trained"], fps, audio, rate)
    write_sample(paths["ground_truth"], case.ground_truth, fps, audio, rate)
    write_sample(out / "dub_source.mp4", case.source.frames, fps, audio, rate)
    write_strip(paths["strip"], [case.source.frames, videos["trained"], case.ground_truth, videos["base"]])
    numbers = summarize([scores])
    numbers["source_clip"], numbers["driving_clip"] = case.source.key, case.driving.key
    (out / "dub_scores.json").write_text(json.dumps(numbers, indent=2) + "\n")
    return {**paths, "scores": numbers}


def _dub_files(cfg: DemoConfig, held, base: Path, export: Path, out: Path) -> dict[str, Path]:
    """Dub raw files through ``eval.dub``'s command line with the stage-2 export, as a user would.

    A held-out person's video (never trained on; one data_prep kept) with another held-out person's speech, and
    the real recording ``real_dir/demo1_video.mp4`` with ``demo2_audio.wav`` when that folder exists; each the
    speech's first ``dub_seconds``.

    Returns:
        ``dub_heldout`` and (when dubbed) ``dub_real``: the mp4 files.

    Raises:
        RuntimeError: A dub failed (its one-line error is on stderr).
    """
    from data_prep.ledger import read_ledger
    from eval.dub.cli import main as dub_main

    # A held-out person data_prep kept (its face is found), with the speech of the next kept person.
    rows = read_ledger(held.prep / "ledger.parquet").to_pylist()
    kept = sorted({Path(r["source"]) for r in rows if r["kind"] == "video" and r["status"] == "kept"})
    videos = kept or sorted(held.corpus.glob("*.mp4"))
    jobs = {"dub_heldout": (videos[0], videos[1 % len(videos)].with_suffix(".wav"))}
    real = Path(cfg.real_dir) if Path(cfg.real_dir).is_absolute() else REPO / cfg.real_dir
    if (real / REAL_VIDEO).is_file() and (real / REAL_SPEECH).is_file():
        jobs["dub_real"] = (real / REAL_VIDEO, real / REAL_SPEECH)
    out.mkdir(parents=True, exist_ok=True)
    done = {}
    for name, (video, speech) in jobs.items():
        target = out / f"{name}.mp4"
        argv = [
            f"video={video}",
            f"audio={speech}",
            f"weights={export}",
            f"base={base}",
            f"output={target}",
            f"duration={cfg.dub_seconds}",
            f"sampler.num_steps={cfg.sample_steps}",
            f"sampler.seed={cfg.seed}",
            "overwrite=true",
        ]
        if dub_main(argv) != 0:
            raise RuntimeError(f"python -m eval.dub {' '.join(argv)} failed (its error is above)")
        done[name] = target
    return done


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


def write_strip(path: Path, videos: list, frames: int = 8) -> None:
    """A PNG with one row per video (source | dub | ground truth | base) of ``frames`` evenly spaced frames."""
    import numpy as np
    from PIL import Image

    count = videos[0].shape[0]
    picks = np.linspace(0, count - 1, frames).round().astype(int)
    rows = [np.concatenate([v[i] for i in picks], axis=1) for v in videos]
    from trainer.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")


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
        samples = _sample_from(model, stage2_cfg, held.shards, runs / "samples", cfg.sample_steps, cfg.seed)
        print(f"[8/10] samples from the stage-2 checkpoint in {runs / 'samples'} ({time.perf_counter() - t0:.0f}s)")
        for line in samples["report"]:
            print(f"      {line}")
        dub = _dub_heldout(model, stage2_cfg, held, runs / "samples", cfg.sample_steps, cfg.seed)
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
        dubs = _dub_files(cfg, held, base, export2, runs / "dubs")
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


def register() -> None:
    """Register :class:`DemoConfig` as the config ``demo`` (composed like every entry point's)."""
    register_schema("demo", DemoConfig)


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
