"""Evaluate a training checkpoint: sample clips from shards, compute the metrics, write the paper's tables.

``python -m eval.run checkpoint=<ckpt> shards=<glob> [output_dir=eval_out] [modes=[v2v_self,v2v_novel,i2v]]
[max_clips=8] [v2v_mask=lip] [sync_protocol=direct|official] [sampler.num_steps=40] [sampler.guidance.audio=2.0] ...``

Modes (the rows of the paper's tables): ``v2v_self`` — V2V self-reenactment, each clip driven by its own
audio (Table 2, left); ``v2v_novel`` — V2V with the audio of the next clip in the list (Table 2, right);
``i2v`` — generated from the first frame and the clip's audio (Table 3). Each sample is written as an mp4
muxed with its driving audio; ``table2.md``/``.csv`` and ``table3.md``/``.csv`` hold the mean of each
metric over the clips (FID and FVD too: per-clip values averaged, which is not the set-level FID of a
large benchmark), ``metrics.csv`` every clip's values and ``skipped.md`` why a metric is missing (weights
absent and so on). Metric weights come from ``TALKDIT_*`` variables (:mod:`eval.metrics.weights`).
``sync_protocol`` picks how Sync-C / Sync-D / AV offset are computed: ``direct`` (default; in memory) or
``official`` (the published pipeline's file steps on the saved sample, :mod:`eval.metrics.sync_official`);
every table names the protocol in a ``sync_protocol`` column and a note under it.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data_prep.audio import AUDIO_RATE, decode_audio
from eval.metrics import METRIC_NAMES, MetricWeights, compute_metrics
from eval.metrics.sync_official import PROTOCOLS, protocol_label, protocol_note
from eval.sampler.batch import edited_sample_inputs, sample_inputs_from_batch
from eval.sampler.edit_audio import edited_track
from eval.sampler.sampler import EulerSampler, SamplerConfig
from eval.sampler.video_out import decode_latents, write_sample
from trainer.atomic import atomic_write_text
from trainer.data.decode import ClipSample, decode_sample
from trainer.data.schema import ShardSampleError
from trainer.data.transforms import TrainingClip, collate_clips

log = logging.getLogger("talkdit.eval")

MODES = {
    "v2v_self": ("v2v", "Table 2: V2V self-reenactment"),
    "v2v_novel": ("v2v", "Table 2: V2V with novel audio"),
    "i2v": ("i2v", "Table 3: I2V"),
}
TABLES = {"table2": ("v2v_self", "v2v_novel"), "table3": ("i2v",)}


@dataclass
class EvalConfig:
    """Options of ``python -m eval.run``.

    Attributes:
        checkpoint: Training checkpoint (``.ckpt`` file or DeepSpeed folder).
        shards: Shard glob of held-out clips (the data_prep schema).
        output_dir: Samples and tables go here.
        modes: Table rows to produce (``v2v_self``, ``v2v_novel``, ``i2v``).
        max_clips: Clips evaluated (the first ones of the shards, in order).
        v2v_mask: V2V mask: ``lip`` (as trained), ``face`` or ``head``.
        identity_refs: Prepend the clips' face reference tokens.
        sync_protocol: ``direct`` or ``official`` (:mod:`eval.metrics.sync_official`).
        sampler: Euler steps, guidance, seed.
        device: Where the models run.
    """

    checkpoint: str = MISSING
    shards: str = MISSING
    output_dir: str = "eval_out"
    modes: list[str] = field(default_factory=lambda: ["v2v_self", "v2v_novel", "i2v"])
    max_clips: int = 8
    v2v_mask: str = "lip"
    identity_refs: bool = True
    sync_protocol: str = "direct"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    device: str = "cpu"


def validate(cfg: EvalConfig) -> None:
    """Fail fast on options the run cannot use, naming the key."""
    unknown = [m for m in cfg.modes if m not in MODES]
    if unknown or not cfg.modes:
        raise ValueError(f"modes={list(cfg.modes)}: expected a non-empty subset of {', '.join(MODES)}")
    if cfg.max_clips < 1:
        raise ValueError(f"max_clips={cfg.max_clips}: expected >= 1")
    if cfg.sync_protocol not in PROTOCOLS:
        raise ValueError(f"sync_protocol={cfg.sync_protocol!r}: expected {' or '.join(PROTOCOLS)}")
    if cfg.v2v_mask not in ("lip", "face", "head"):
        raise ValueError(f"v2v_mask={cfg.v2v_mask!r}: expected lip, face or head")
    if cfg.sampler.num_steps < 1:
        raise ValueError(f"sampler.num_steps={cfg.sampler.num_steps}: expected >= 1")
    if not Path(cfg.checkpoint).exists():
        raise FileNotFoundError(f"checkpoint={cfg.checkpoint}: no such file or folder")


def load_module(checkpoint: str | Path, device: str = "cpu"):
    """The training module of a checkpoint, with its trained tensors, in eval mode.

    The config stored in the checkpoint rebuilds the model (its weight files must be where the run found
    them); the checkpoint's trainable tensors (adapter, LoRA) are then loaded over it.
    """
    from trainer.checkpoints import read_training_checkpoint
    from trainer.config.compose import config_from_container
    from trainer.lightning_module import TalkingHeadModule

    ckpt = read_training_checkpoint(checkpoint)
    cfg = config_from_container(ckpt["talkdit"]["config"], source=str(checkpoint))
    module = TalkingHeadModule(cfg)
    missing = set(ckpt["state_dict"]) - set(module.state_dict())
    if missing:
        raise ValueError(f"{checkpoint}: tensors the model does not have: {sorted(missing)[:5]}")
    module.load_state_dict(ckpt["state_dict"], strict=False)
    return module.to(device).eval()


def read_clips(shards: str, module, limit: int) -> list[tuple[ClipSample, np.ndarray, int]]:
    """The first ``limit`` clips of the shards with their audio (:func:`data_prep.audio.decode_audio`: 16 kHz mono).

    Raises:
        FileNotFoundError: No shard matches.
        ShardSampleError: A sample breaks the schema or its audio does not decode.
    """
    from trainer.data.datamodule import expand_shards
    from trainer.runner import feature_spec

    urls = expand_shards(shards)
    out = []
    for raw in wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False):
        clip = decode_sample(raw, feature_spec(module.cfg), decode_latents=False)
        try:
            audio = decode_audio(raw["audio.wav"])
        except ValueError as err:
            raise ShardSampleError(clip.shard, clip.key, f"member 'audio.wav': {err}") from err
        out.append((clip, audio, AUDIO_RATE))
        if len(out) == limit:
            break
    return out


def clip_batch(clip: ClipSample, num_refs: int, whisper: np.ndarray | None = None) -> dict:
    """A one-clip batch in the training loader's layout (stored resolution, every frame)."""
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


@torch.no_grad()
def sample_clip(module, sampler: EulerSampler, batch: dict, mode: str, v2v_mask: str, identity_refs: bool, seed: int):
    """Sample one clip of ``batch`` in ``mode`` (``v2v``/``i2v``/``t2v``); returns uint8 frames ``[F, H, W, 3]``."""
    dev = module.device
    batch = module.transfer_batch_to_device(batch, dev, 0)
    latents, refs = module.encode_latents(batch, torch.Generator(device=dev).manual_seed(seed))
    inputs = sample_inputs_from_batch(module, batch, latents, refs, mode, v2v_mask, identity_refs)
    out = sampler.sample(inputs)
    return decode_latents(module.vae, out)[0]


@torch.no_grad()
def sample_edited_clip(
    module, sampler: EulerSampler, batch: dict, edits: list, audio: np.ndarray, sample_rate: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a visual-dialog edit list to one clip and sample it.

    Args:
        module: The training module.
        sampler: The sampler.
        batch: A one-clip batch (:func:`clip_batch`).
        edits: :class:`eval.sampler.editing.Edit` list on the clip's timeline.
        audio: The clip's waveform ``[S]``.
        sample_rate: Its rate.
        seed: Seed of the posterior sample (the sampler's noise comes from its own seed).

    Returns:
        ``(frames [F', H, W, 3] uint8, driving audio [S'])`` of the edited clip.
    """
    dev = module.device
    batch = module.transfer_batch_to_device(batch, dev, 0)
    latents, refs = module.encode_latents(batch, torch.Generator(device=dev).manual_seed(seed))
    inputs, _, frames_map = edited_sample_inputs(module, batch, latents, refs, edits)
    frames = decode_latents(module.vae, sampler.sample(inputs))[0]
    return frames, edited_track(audio, frames_map, sample_rate, float(batch["fps"][0]))


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None and np.isfinite(v)]
    if not got:
        return float("inf") if any(v == float("inf") for v in values if v is not None) else None
    return float(np.mean(got))


def write_tables(out: Path, rows: list[dict], sync_label: str, sync_note: str) -> dict[str, Path]:
    """``table2``/``table3`` (markdown and CSV), ``metrics.csv`` (every clip) from per-clip rows.

    Args:
        out: Output folder.
        rows: One dict per clip and mode (``mode``, ``clip`` and the metric values).
        sync_label: The sync protocol (:func:`eval.metrics.sync_official.protocol_label`), a CSV column.
        sync_note: The sentence under each markdown table saying how the sync metrics were computed.
    """
    written = {}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["mode", "clip", *METRIC_NAMES])
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in writer.fieldnames})
    atomic_write_text(out / "metrics.csv", buf.getvalue())
    written["metrics"] = out / "metrics.csv"
    for table, modes in TABLES.items():
        present = [m for m in modes if any(r["mode"] == m for r in rows)]
        if not present:
            continue
        means = {m: {k: _mean([r[k] for r in rows if r["mode"] == m]) for k in METRIC_NAMES} for m in present}
        cols = [k for k in METRIC_NAMES if any(means[m][k] is not None for m in present)]
        md = [f"| setting | clips | {' | '.join(cols)} |", "| --- | --- |" + " --- |" * len(cols)]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["setting", "clips", *cols, "sync_protocol"])
        for m in present:
            n = sum(r["mode"] == m for r in rows)
            vals = [means[m][k] for k in cols]
            md.append(f"| {MODES[m][1]} | {n} | " + " | ".join("–" if v is None else f"{v:.4g}" for v in vals) + " |")
            w.writerow([m, n, *["" if v is None else v for v in vals], sync_label])
        atomic_write_text(out / f"{table}.md", "\n".join(md) + f"\n\n{sync_note}\n")
        atomic_write_text(out / f"{table}.csv", buf.getvalue())
        written[table] = out / f"{table}.md"
    return written


def run_eval(cfg: EvalConfig, weights: MetricWeights | None = None) -> dict[str, Path]:
    """Sample and score every clip in every mode; returns where the tables are."""
    validate(cfg)
    weights = weights or MetricWeights.from_env()
    module = load_module(cfg.checkpoint, cfg.device)
    sampler = EulerSampler(module.dit, cfg.sampler, module.cfg.objective.timestep_loc)
    clips = read_clips(cfg.shards, module, cfg.max_clips)
    if not clips:
        raise FileNotFoundError(f"shards={cfg.shards}: no clip found")
    out = Path(cfg.output_dir)
    num_refs = module.cfg.objective.num_reference_frames
    rows, skipped = [], {}
    for i, (clip, audio, sr) in enumerate(clips):
        for mode in cfg.modes:
            whisper, drive = None, audio
            if mode == "v2v_novel":
                other_clip, other_audio, _ = clips[(i + 1) % len(clips)]
                whisper, drive = other_clip.whisper, other_audio
            batch = clip_batch(clip, num_refs, whisper)
            frames = sample_clip(
                module, sampler, batch, MODES[mode][0], cfg.v2v_mask, cfg.identity_refs, cfg.sampler.seed + i
            )
            sample = out / "samples" / mode / f"{clip.key}.mp4"
            write_sample(sample, frames, clip.fps, drive, sr)
            values = compute_metrics(
                frames,
                clip.frames,
                drive,
                clip.fps,
                weights,
                sr,
                clip.ref_frames[0],
                cfg.device,
                sync_protocol=cfg.sync_protocol,
                video_path=sample,
            )
            rows.append({"mode": mode, "clip": clip.key, **values})
            for name, why in values.skipped.items():
                skipped.setdefault(name, why)
            log.info("%s %s: %s", mode, clip.key, {k: v for k, v in values.items() if v is not None})
    label, note = protocol_label(cfg.sync_protocol, weights.s3fd), protocol_note(cfg.sync_protocol, weights.s3fd)
    written = write_tables(out, rows, label, note)
    lines = [f"- `{k}`: {v}" for k, v in sorted(skipped.items())]
    atomic_write_text(out / "skipped.md", "# Metrics not computed\n\n" + ("\n".join(lines) or "none") + "\n")
    written["skipped"] = out / "skipped.md"
    written["samples"] = out / "samples"
    return written


def main(argv: list[str] | None = None) -> int:
    """Console entry point: bad options exit with status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg: EvalConfig = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(EvalConfig), OmegaConf.from_dotlist(args))
        )
        validate(cfg)
    except (OmegaConfBaseException, ValueError, FileNotFoundError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    written = run_eval(cfg)
    for name, path in written.items():
        print(f"{name:10s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
