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

import csv
import io
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eval.config import MODES, TABLES, EvalConfig, check_size, register, sample_size, validate
from eval.pairing import novel_audio_partners
from trainer.atomic import atomic_write_text
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config

# torch, the media stack and the model load inside the functions that use them, so that `--help`, `--cfg job`
# and bad options answer without them.
if TYPE_CHECKING:
    from eval.metrics import MetricWeights
    from eval.sampler.sampler import EulerSampler
    from trainer.config.schema import TrainConfig
    from trainer.data.decode import ClipSample
    from trainer.model.talking_head import TalkingHeadModel

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
TALKDIT_CLIP (a transformers CLIP folder, CLIP-I).""",
    register=register,
)


def read_clips(
    shards: str, cfg: TrainConfig, limit: int, key: str = "shards"
) -> list[tuple[ClipSample, np.ndarray, int]]:
    """The first ``limit`` clips of the shards with their 16 kHz audio, checked against a training config.

    Args:
        shards: Brace pattern, glob or list of shards.
        cfg: The training config whose feature layout the clips must carry.
        limit: Clips to read.
        key: The option that named the shards, for error messages.

    Raises:
        FileNotFoundError: No shard matches.
        ShardSampleError: A shard is not a readable tar file, or a sample breaks the schema (names the shard).
    """
    import tarfile

    import webdataset as wds

    from data_prep.audio import AUDIO_RATE, decode_audio
    from trainer.data.datamodule import feature_spec
    from trainer.data.decode import decode_sample
    from trainer.data.schema import ShardSampleError
    from trainer.data.shard_paths import expand_shards

    out = []
    for url in expand_shards(shards, key=key):
        try:
            for raw in wds.tarfile_samples([{"url": url}]):
                clip = decode_sample(raw, feature_spec(cfg))
                try:
                    audio = decode_audio(raw["audio.wav"])
                except ValueError as err:
                    raise ShardSampleError(clip.shard, clip.key, f"member 'audio.wav': {err}") from err
                out.append((clip, audio, AUDIO_RATE))
                if len(out) == limit:
                    return out
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ShardSampleError(url, None, f"not a readable tar file ({' '.join(str(err).split())})") from err
    return out


def resize_clip(clip: ClipSample, size: tuple[int, int]) -> ClipSample:
    """The clip with its frames, reference frames and boxes resized to ``size`` (``(height, width)``)."""
    import dataclasses

    h, w = clip.frames.shape[1:3]
    if (h, w) == tuple(size):
        return clip
    scale = np.array([size[1] / w, size[0] / h, size[1] / w, size[0] / h], np.float32)
    return dataclasses.replace(
        clip,
        frames=resize_frames(clip.frames, size),
        ref_frames=resize_frames(clip.ref_frames, size),
        face_boxes=clip.face_boxes * scale,
        lower_face_boxes=clip.lower_face_boxes * scale,
        ref_lower_face_boxes=clip.ref_lower_face_boxes * scale,
    )


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[F, H, W, 3]`` uint8 frames at ``size`` (``(height, width)``): area-averaged down, bicubic up."""
    import cv2

    h, w = frames.shape[1:3]
    if (h, w) == tuple(size):
        return frames
    interp = cv2.INTER_AREA if size[0] * size[1] < h * w else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=interp) for f in frames])


def clip_batch(clip: ClipSample, num_refs: int, whisper: np.ndarray | None = None) -> dict:
    """A one-clip batch in the training loader's layout (the clip's resolution, every frame)."""
    from trainer.data.transforms import TrainingClip, collate_clips

    tc = TrainingClip(
        key=clip.key,
        frames=clip.frames,
        fps=clip.fps,
        frame_start=0,
        whisper=clip.whisper if whisper is None else whisper,
        lower_face_boxes=clip.lower_face_boxes,
        face_boxes=clip.face_boxes,
        ref_frames=clip.ref_frames[:num_refs],
        ref_lower_face_boxes=clip.ref_lower_face_boxes[:num_refs],
        caption=clip.caption or "",
        latents=None,
        num_frames=clip.frames.shape[0],
    )
    return collate_clips([tc])


def sample_clip(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    sampler: EulerSampler,
    batch: dict,
    mode: str,
    v2v_mask: str,
    identity_refs: bool,
    seed: int,
    return_mask: bool = False,
    edit_batch: dict | None = None,
):
    """Sample one clip of ``batch`` in ``mode`` (``v2v``/``i2v``/``t2v``, or ``invert_edit``).

    Args:
        model: The model (:func:`trainer.stage_model.load_trained_model`).
        cfg: The training config it was built from.
        sampler: A sampler over ``model.dit``.
        batch: A one-clip batch (:func:`clip_batch`).
        mode: ``v2v``, ``i2v`` or ``t2v``; ``invert_edit``: ``batch`` inverted with its own audio, then denoised
            with ``edit_batch``'s (:func:`eval.sampler.inversion.invert_edit`, the V2V mask ``v2v_mask``).
        v2v_mask: ``lip``, ``face`` or ``head``.
        identity_refs: Prepend the identity reference tokens.
        seed: Seed of the posterior sample (the sampler's noise comes from its own seed).
        return_mask: Also return the generated-token mask.
        edit_batch: ``invert_edit`` only: the same clip with the new audio features.

    Returns:
        uint8 frames ``[F, H, W, 3]``; with ``return_mask``, also the generated-token mask ``[T, h, w]``
        (1 = generated), for pasting the generated region back into source frames (:mod:`eval.sampler.paste`).
    """
    import torch

    from eval.sampler.batch import sample_inputs_from_batch
    from eval.sampler.inversion import invert_edit
    from eval.sampler.video_out import decode_latents
    from trainer.data.transforms import batch_to_device

    with torch.no_grad():
        dev = model.device
        batch = batch_to_device(batch, dev)
        latents, refs = model.encode_latents(batch, torch.Generator(device=dev).manual_seed(seed))
        if mode == "invert_edit":
            if edit_batch is None:
                raise ValueError("mode 'invert_edit' needs edit_batch, the clip with its new audio")
            source = sample_inputs_from_batch(model, cfg, batch, latents, refs, "v2v", v2v_mask, identity_refs)
            edit = batch_to_device(edit_batch, dev)
            inputs = sample_inputs_from_batch(model, cfg, edit, latents, refs, "v2v", v2v_mask, identity_refs)
            out = invert_edit(sampler, source, inputs)
        else:
            inputs = sample_inputs_from_batch(model, cfg, batch, latents, refs, mode, v2v_mask, identity_refs)
            out = sampler.sample(inputs)
        frames = decode_latents(model.vae, out)[0]
    return (frames, inputs.mask[0].cpu()) if return_mask else frames


def sample_edited_clip(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    sampler: EulerSampler,
    batch: dict,
    edits: list,
    audio: np.ndarray,
    sample_rate: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a visual-dialog edit list to one clip and sample it.

    Args:
        model: The model (:func:`trainer.stage_model.load_trained_model`).
        cfg: The training config it was built from.
        sampler: The sampler.
        batch: A one-clip batch (:func:`clip_batch`).
        edits: :class:`eval.sampler.edit_plan.Edit` list on the clip's timeline.
        audio: The clip's waveform ``[S]``.
        sample_rate: Its rate.
        seed: Seed of the posterior sample (the sampler's noise comes from its own seed).

    Returns:
        ``(frames [F', H, W, 3] uint8, driving audio [S'])`` of the edited clip.
    """
    import torch

    from eval.sampler.batch import edited_sample_inputs
    from eval.sampler.edit_audio import edited_track
    from eval.sampler.video_out import decode_latents
    from trainer.data.transforms import batch_to_device

    with torch.no_grad():
        dev = model.device
        batch = batch_to_device(batch, dev)
        latents, refs = model.encode_latents(batch, torch.Generator(device=dev).manual_seed(seed))
        inputs, _, frames_map = edited_sample_inputs(model, cfg, batch, latents, refs, edits)
        frames = decode_latents(model.vae, sampler.sample(inputs))[0]
    return frames, edited_track(audio, frames_map, sample_rate, float(batch["fps"][0]))


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None and np.isfinite(v)]
    if not got:
        return float("inf") if any(v == float("inf") for v in values if v is not None) else None
    return float(np.mean(got))


def write_tables(
    out: Path,
    rows: list[dict],
    note: str = "",
    sync_label: str = "",
    set_level: dict[str, dict[str, float]] | None = None,
) -> dict[str, Path]:
    """``table2``/``table3`` (markdown and CSV), ``metrics.csv`` (every clip) from per-clip rows.

    Every table has a column for every metric; a metric that was not computed shows ``–`` (markdown) or an
    empty cell (CSV), and ``skipped.md`` says why.

    Args:
        out: Output folder.
        rows: One dict per clip and mode: ``mode``, ``clip``, the metrics, ``source_size``, ``sample_size``.
        note: Lines under each markdown table (how the samples were compared, how sync was computed).
        sync_label: The sync protocol (:func:`eval.metrics.sync_official.protocol_label`), a CSV column.
        set_level: ``mode → {metric: value}`` computed over the whole row (FID, FVD); they replace the mean of
            the per-clip values in the tables (a set-level metric the row could not compute shows ``–``).
    """
    from eval.metrics import METRIC_NAMES

    written = {}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["mode", "clip", "source_size", "sample_size", *METRIC_NAMES])
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in writer.fieldnames})
    atomic_write_text(out / "metrics.csv", buf.getvalue())
    written["metrics"] = out / "metrics.csv"
    cols = list(METRIC_NAMES)
    for table, modes in TABLES.items():
        present = [m for m in modes if any(r["mode"] == m for r in rows)]
        if not present:
            continue
        means = {m: {k: _mean([r.get(k) for r in rows if r["mode"] == m]) for k in cols} for m in present}
        for m in present:
            if set_level is not None:
                means[m].update({k: set_level.get(m, {}).get(k) for k in SET_LEVEL})
        md = [f"| setting | clips | {' | '.join(cols)} |", "| --- | --- |" + " --- |" * len(cols)]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["setting", "clips", *cols, "sync_protocol"])
        for m in present:
            n = sum(r["mode"] == m for r in rows)
            vals = [means[m][k] for k in cols]
            md.append(f"| {MODES[m][1]} | {n} | " + " | ".join("–" if v is None else f"{v:.4g}" for v in vals) + " |")
            w.writerow([m, n, *["" if v is None else v for v in vals], sync_label])
        if note:
            md += ["", note, "– : not computed (see skipped.md)."]
        atomic_write_text(out / f"{table}.md", "\n".join(md) + "\n")
        atomic_write_text(out / f"{table}.csv", buf.getvalue())
        written[table] = out / f"{table}.md"
    return written


# Metrics the tables report over the whole row rather than as the mean of per-clip values.
SET_LEVEL = ("fid", "fvd")


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
