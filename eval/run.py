"""Evaluate a training checkpoint: sample clips from shards, compute the metrics, write the paper's tables.

``python -m eval.run checkpoint=<ckpt> shards=<glob> [output_dir=eval_out] [modes=[v2v_self,v2v_novel,i2v]]
[max_clips=8] [size=[512,512]] [v2v_mask=lip] [sync_protocol=direct|official] [sampler.num_steps=40]
[sampler.guidance.audio=2.0] ...``

Inputs are checked before any model is built: the options, the checkpoint and its stored config, and every
clip to evaluate (read from the shards). Each clip is sampled at ``size`` (default: its own size brought into
the checkpoint's training range, sides multiples of the VAE's spatial factor, aspect kept; see
:func:`eval.config.sample_size`) and the sample is resized back to the clip's size, where the metrics compare
it with the clip and where it is written.

Modes (the rows of the paper's tables): ``v2v_self`` — V2V self-reenactment, each clip driven by its own
audio (Table 2, left); ``v2v_novel`` — V2V with another clip's speech, preferably another person's
(:func:`eval.pairing.novel_audio_partners`; Table 2, right);
``i2v`` — generated from the first frame and the clip's audio (Table 3). Each sample is written as an mp4
muxed with its driving audio; ``table2.md``/``.csv`` and ``table3.md``/``.csv`` hold the mean of each
metric over the clips, except FID and FVD, which are set-level (one Fréchet distance between all generated
and all reference clips of the row, as papers report them), ``metrics.csv`` every clip's values (FID and FVD
per clip there) and ``skipped.md`` why a metric is missing (weights absent and so on). Metric weights come
from ``TALKDIT_*`` variables (:mod:`eval.metrics.weights`).
``sync_protocol`` picks how Sync-C / Sync-D / AV offset are computed: ``direct`` (default; in memory) or
``official`` (the published pipeline's file steps on the saved sample, :mod:`eval.metrics.sync_official`);
every table names the protocol in a ``sync_protocol`` column and a note under it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from eval.clips import clip_batch, read_clips, resize_clip, resize_frames, sample_clip
from eval.config import MODES, EvalConfig, check_size, register, sample_size, validate
from eval.pairing import novel_audio_partners
from eval.tables import write_tables
from trainer.atomic import atomic_write_text
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config
from trainer.config.errors import ConfigError

# torch, the media stack and the model load inside the functions that use them, so that `--help`, `--cfg job`
# and bad options answer without them.
if TYPE_CHECKING:
    from eval.metrics import MetricWeights

log = logging.getLogger("talkdit.eval")

COMMAND = Command(
    module="eval.run",
    config_name="eval",
    synopsis="checkpoint=<ckpt> shards=<glob> [key=value ...]",
    summary="""Evaluate a training checkpoint on held-out shards: sample every clip in each mode (V2V
self-reenactment, V2V with novel audio, I2V), write the samples as mp4 with their driving audio, and the paper's
Tables 2 and 3 (table2.md/.csv, table3.md/.csv), metrics.csv (every clip) and skipped.md (each metric not
computed and why). Clips are sampled at `size` (default: their own size brought into the checkpoint's training
range, sides multiples of 32) and resized back to their own size for the metrics.""",
    examples=(
        "python -m eval.run checkpoint=runs/<experiment>/<run>/checkpoints/last.ckpt 'shards=/data/heldout/*.tar'",
        "python -m eval.run checkpoint=<ckpt> 'shards=...' max_clips=64 size=[512,512] sampler.guidance.audio=2.0",
    ),
    notes="""Metric weights come from environment variables (a missing one skips its metrics, with the reason):
TALKDIT_SYNCNET (syncnet_v2.model), TALKDIT_LPIPS_ALEXNET (alexnet-owt-7be5be79.pth), TALKDIT_FID_INCEPTION
(pt_inception-2015-12-05-6726825d.pth), TALKDIT_I3D (i3d_torchscript.pt), TALKDIT_ARCFACE (backbone.pth),
TALKDIT_CLIP (a transformers CLIP folder, CLIP-I), TALKDIT_NIQE (NIQE's modelparameters.mat).""",
    register=register,
)


def _size_text(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


def run_eval(cfg: EvalConfig, weights: MetricWeights | None = None) -> dict[str, Path]:
    """Sample and score every clip in every mode; returns where the tables are.

    Every input is checked before a model is built or a file written: the options, the checkpoint and its
    config, and the clips (shards found, readable, in the schema the checkpoint was trained on).

    Raises:
        ConfigError: A bad option.
        FileNotFoundError: No checkpoint, or no shard matches ``shards``.
        ShardSampleError: A shard is unreadable or a sample breaks the schema.
        ValueError: The checkpoint is not a talkdit checkpoint.
    """
    validate(cfg)
    from trainer.data.shard_paths import expand_shards

    expand_shards(cfg.shards, key="shards")  # a pattern that matches nothing fails before torch loads
    from eval.metrics import MetricSuite, MetricWeights
    from eval.sampler.sampler import EulerSampler
    from eval.sampler.video_out import write_sample
    from trainer.stage_model import load_trained_model, read_checkpoint

    weights = weights or MetricWeights.from_env()
    metrics = MetricSuite(weights, cfg.device, cfg.sync_protocol)  # every network loaded once for all clips
    loaded = read_checkpoint(cfg.checkpoint)
    train_cfg = loaded[1]
    clips = read_clips(cfg.shards, train_cfg, cfg.max_clips)
    if not clips:
        raise FileNotFoundError(f"shards={cfg.shards}: the shards hold no clip")
    lo, hi = train_cfg.data.min_megapixels, train_cfg.data.max_megapixels
    spatial = train_cfg.model.vae.spatial_compression
    check_size(cfg.size, spatial)
    sizes = [
        tuple(cfg.size) if cfg.size is not None else sample_size(*clip.frames.shape[1:3], lo, hi, spatial)
        for clip, _, _ in clips
    ]
    if "v2v_invert" in cfg.modes:
        temporal = train_cfg.model.vae.temporal_compression
        longest = max((clip.frames.shape[0] - 1) // temporal + 1 for clip, _, _ in clips)
        if 0 < cfg.sampler.block_size < longest:
            raise ConfigError(
                "sampler.block_size",
                cfg.sampler.block_size,
                f"v2v_invert samples a clip in one pass: expected 0 or >= {longest}, the longest clip's latent frames",
            )
    model, _ = load_trained_model(cfg.checkpoint, cfg.device, loaded)
    sampler = EulerSampler(model.dit, cfg.sampler, train_cfg.objective.timestep_loc)
    out = Path(cfg.output_dir)
    num_refs = train_cfg.objective.num_reference_frames
    rows, skipped = [], {}
    partners = novel_audio_partners([clip for clip, _, _ in clips])
    for i, ((clip, audio, sr), size) in enumerate(zip(clips, sizes, strict=True)):
        source = clip.frames.shape[1:3]
        sampled_clip = resize_clip(clip, size)
        for mode in cfg.modes:
            whisper, drive = None, audio
            if mode in ("v2v_novel", "v2v_invert"):
                other_clip, other_audio, _ = clips[partners[i]]
                whisper, drive = other_clip.whisper, other_audio
            batch, edit = clip_batch(sampled_clip, num_refs, whisper), None
            if mode == "v2v_invert":  # the clip with its own audio is inverted, then edited with the other's
                batch, edit = clip_batch(sampled_clip, num_refs), batch
            sampled = sample_clip(
                model,
                train_cfg,
                sampler,
                batch,
                MODES[mode][0],
                cfg.v2v_mask,
                cfg.identity_refs,
                cfg.sampler.seed + i,
                edit_batch=edit,
            )
            frames = resize_frames(sampled, source)
            sample = out / "samples" / mode / f"{clip.key}.mp4"
            write_sample(sample, frames, clip.fps, drive, sr)
            values = metrics(
                frames, clip.frames, drive, clip.fps, sr, clip.ref_frames[0], video_path=sample, group=mode
            )
            rows.append(
                {
                    "mode": mode,
                    "clip": clip.key,
                    "source_size": _size_text(source),
                    "sample_size": _size_text(size),
                    **values,
                }
            )
            for name, why in values.skipped.items():
                skipped.setdefault(name, why)
            log.info("%s %s: %s", mode, clip.key, {k: v for k, v in values.items() if v is not None})
    resized = sorted({(r["sample_size"], r["source_size"]) for r in rows if r["sample_size"] != r["source_size"]})
    note = (
        "Samples generated at " + ", ".join(f"{a} (source {b})" for a, b in resized) + " were resized back to the "
        "source size; every metric compares at the source size."
        if resized
        else "Samples generated at the source size."
    )
    from eval.metrics.sync_official import protocol_label, protocol_note

    note += "\n" + protocol_note(cfg.sync_protocol, weights.s3fd)
    note += "\nFID and FVD: one Fréchet distance over all clips of the row (set-level); metrics.csv has each clip's."
    set_level = {}
    for mode in cfg.modes:
        set_level[mode], why = metrics.set_scores(mode)
        for name, reason in why.items():
            skipped.setdefault(name, f"set-level {name.upper()} of {mode}: {reason}")
    written = write_tables(out, rows, note, protocol_label(cfg.sync_protocol, weights.s3fd), set_level)
    lines = [f"- `{k}`: {v}" for k, v in sorted(skipped.items())]
    atomic_write_text(out / "skipped.md", "# Metrics not computed\n\n" + ("\n".join(lines) or "none") + "\n")
    written["skipped"] = out / "skipped.md"
    written["samples"] = out / "samples"
    return written


def _evaluate(overrides: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    register()
    cfg: EvalConfig = load_config("eval", overrides)
    validate(cfg)  # before torch and the media stack load
    written = run_eval(cfg)
    for name, path in written.items():
        print(f"{name:10s} {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point: bad options, checkpoints or shards exit with status 2 and one line."""
    from trainer.data.schema import ShardSampleError

    return run_command(COMMAND, argv, _evaluate, errors=(ShardSampleError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
