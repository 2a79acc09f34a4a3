"""The demo's last steps, from the stage-2 checkpoint and its export: samples and dubs, written and scored.

A V2V clip and an edited clip (a latent frame inserted) sampled from a held-out clip with the metric suite's
scores; a held-out person dubbed with another person's speech, next to the exact video a perfect dub would be,
with the lip-sync benchmark's numbers; and raw files dubbed through ``python -m eval.dub``'s command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from launch.demo_config import DemoConfig
from trainer.atomic import atomic_path

# The eval imports sit inside the steps that use them: launch.demo imports this module, and its --help and
# bad-argument errors answer without importing torch (tests/test_cli.py).

REPO = Path(__file__).resolve().parents[1]
# The real recording the demo dubs, and whose speech drives it (the other recording's).
REAL_VIDEO, REAL_SPEECH = "demo1_video.mp4", "demo2_audio.wav"


def sample_from(model, cfg, shards: str, out: Path, steps: int, seed: int) -> dict:
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


def dub_heldout(model, cfg, held, out: Path, steps: int, seed: int) -> dict:
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


def dub_files(cfg: DemoConfig, held, base: Path, export: Path, out: Path) -> dict[str, Path]:
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


def write_strip(path: Path, videos: list, frames: int = 8) -> None:
    """A PNG with one row per video (source | dub | ground truth | base) of ``frames`` evenly spaced frames."""
    count = videos[0].shape[0]
    picks = np.linspace(0, count - 1, frames).round().astype(int)
    rows = [np.concatenate([v[i] for i in picks], axis=1) for v in videos]
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")
