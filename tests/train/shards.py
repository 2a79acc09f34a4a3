"""Small schema-valid shards made from simple arrays, for trainer tests (fast; no face rendering)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.samples import ClipArrays, attach_latents, encode_sample, make_clip_id
from data_prep.shard_writer import ShardWriter
from trainer.model.whisper_features import WhisperArch, WhisperFeatureExtractor, WhisperFeaturesConfig

TINY_WHISPER = WhisperFeaturesConfig(
    random_init=True, arch=WhisperArch(d_model=32, encoder_layers=4, encoder_attention_heads=2, encoder_ffn_dim=64)
)


def simple_clip(
    seed: int, frames: int, size: int, fps: float, refs: int, extractor, width: int | None = None
) -> ClipArrays:
    width = width or size
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    yy, xx = np.mgrid[0:size, 0:width]
    cx = width / 2 + 6 * np.sin(2 * np.pi * 0.5 * t + seed)
    cy = size / 2
    base = np.stack([np.full((size, width), 60 + 10 * seed % 80)] * 3, -1).astype(np.float32)
    video = np.empty((frames, size, width, 3), dtype=np.uint8)
    lower = np.empty((frames, 4), dtype=np.float32)
    for i in range(frames):
        img = base.copy()
        face = ((xx - cx[i]) / (size * 0.22)) ** 2 + ((yy - cy) / (size * 0.3)) ** 2 < 1
        img[face] = (200, 160, 140)
        mouth_open = 2 + 6 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t[i] + seed))
        mouth = (np.abs(xx - cx[i]) < size * 0.08) & (np.abs(yy - (cy + size * 0.15)) < mouth_open)
        img[mouth] = (60, 20, 20)
        video[i] = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        lower[i] = (cx[i] - size * 0.2, cy + size * 0.02, cx[i] + size * 0.2, cy + size * 0.3)
    face_boxes = lower.copy()
    face_boxes[:, 1] = cy - size * 0.3
    audio_len = int(round(frames / fps * 16000))
    ts = np.arange(audio_len) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * ts) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * ts + seed))).astype(np.float32)
    whisper = extractor.encode(audio).numpy()
    return ClipArrays(
        clip_id=make_clip_id(f"simple{seed}-{size}x{width}@{fps}", 0, frames, "test"),
        source=f"simple://{seed}",
        span=(0, frames),
        fps=fps,
        frames=video,
        audio=audio,
        sample_rate=16000,
        whisper=whisper,
        face_boxes=face_boxes,
        lower_face_boxes=lower,
        ref_frames=video[:refs][::-1].copy(),
        ref_lower_face_boxes=lower[:refs][::-1].copy(),
        caption=None if seed % 2 else f"person {seed} talking",
    )


def write_simple_shards(
    out: Path,
    num_clips: int = 4,
    per_shard: int = 2,
    frames: int = 17,
    size: int = 64,
    fps: float | list[float] = 25.0,
    refs: int = 2,
    vae=None,
    widths: list[int] | None = None,
) -> list[Path]:
    """Write ``num_clips`` clips into shards; with ``vae``, also their cached posteriors.

    ``fps`` and ``widths`` given as lists cycle over the clips (mixed frame rates and aspect ratios).
    """
    extractor = WhisperFeatureExtractor(TINY_WHISPER)
    rates = fps if isinstance(fps, list) else [fps]
    with ShardWriter(out, samples_per_shard=per_shard) as writer:
        for seed in range(num_clips):
            width = widths[seed % len(widths)] if widths else None
            clip = simple_clip(seed, frames, size, rates[seed % len(rates)], refs, extractor, width)
            if vae is not None:
                attach_latents(clip, vae)
            writer.write(encode_sample(clip))
    return writer.written
