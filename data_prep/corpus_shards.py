"""Shards from a generated corpus: the embedded default's path from media files to training samples.

Each corpus video (mp4 + wav + per-frame boxes in its manifest record) is decoded once, cut into clips
of ``clip_frames`` frames, and every clip becomes one shard sample of the DESIGN §5 schema: the clip
re-encoded, its 16 kHz audio, Whisper features of that audio, the face and lower-face boxes, and
reference frames drawn from ±5 s around the clip. The data_prep pipeline (filters, detection, ledger)
replaces the manifest boxes with detected ones for real videos.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import decord
import numpy as np
import soundfile as sf
import torch

from data_prep.samples import ClipArrays, encode_sample, make_clip_id
from data_prep.shard_writer import ShardWriter
from data_prep.synthetic.corpus import CorpusEntry, load_manifest
from trainer.model.vae import encode_posterior
from trainer.model.whisper_features import WhisperFeatureExtractor

REFERENCE_WINDOW_S = 5.0


@dataclass
class ClipCutting:
    """How videos become clips.

    Attributes:
        clip_frames: Frames per clip (``8k+1``).
        clip_stride: Frames between clip starts (``clip_frames`` for back-to-back clips).
        num_reference_frames: Reference frames per clip, drawn from ±5 s around it (outside it).
        samples_per_shard: Samples per tar shard.
        caption: Caption stored with every clip (``None``: the trainer's default prompt).
        seed: Seed of the reference-frame draws.
    """

    clip_frames: int = 25
    clip_stride: int = 25
    num_reference_frames: int = 2
    samples_per_shard: int = 4
    caption: str | None = None
    seed: int = 0


def reference_indices(
    start: int, end: int, num_frames: int, fps: float, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Frames for identity references: within ±5 s of the clip ``[start, end)``, preferably outside it.

    Returns:
        ``[count]`` sorted frame indices (frames of the clip only when too few lie outside it).
    """
    reach = int(round(REFERENCE_WINDOW_S * fps))
    lo, hi = max(0, start - reach), min(num_frames, end + reach)
    outside = np.array([i for i in range(lo, hi) if i < start or i >= end], dtype=np.int64)
    pool = outside if outside.size >= count else np.arange(lo, hi)
    return np.sort(rng.choice(pool, size=count, replace=pool.size < count))


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def video_clips(
    entry: CorpusEntry,
    corpus_dir: Path,
    cutting: ClipCutting,
    extractor: WhisperFeatureExtractor,
    settings_fingerprint: str,
) -> list[ClipArrays]:
    """Decode one corpus video and cut it into clips with features and references."""
    video_path = corpus_dir / f"{entry.video_id}.mp4"
    reader = decord.VideoReader(str(video_path), num_threads=1)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    audio, sr = sf.read(str(corpus_dir / f"{entry.video_id}.wav"), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != 16000:
        raise ValueError(f"{entry.video_id}.wav has {sr} Hz audio; the shard schema stores 16 kHz")
    faces = np.asarray(entry.face_boxes, dtype=np.float32)
    lower = np.asarray(entry.lower_face_boxes, dtype=np.float32)
    n = min(len(frames), len(faces))
    digest = _digest(video_path)
    clips = []
    for start in range(0, n - cutting.clip_frames + 1, cutting.clip_stride):
        end = start + cutting.clip_frames
        clip_id = make_clip_id(digest, start, end, settings_fingerprint)
        rng = np.random.default_rng([cutting.seed, int(clip_id[:8], 16)])
        refs = reference_indices(start, end, n, entry.fps, cutting.num_reference_frames, rng)
        a0, a1 = round(start / entry.fps * 16000), round(end / entry.fps * 16000)
        clip_audio = audio[a0:a1]
        clips.append(
            ClipArrays(
                clip_id=clip_id,
                source=str(video_path),
                span=(start, end),
                fps=entry.fps,
                frames=frames[start:end],
                audio=clip_audio,
                sample_rate=16000,
                whisper=extractor.encode(clip_audio).numpy(),
                face_boxes=faces[start:end],
                lower_face_boxes=lower[start:end],
                ref_frames=frames[refs],
                ref_lower_face_boxes=lower[refs],
                caption=cutting.caption,
            )
        )
    return clips


def attach_latents(clip: ClipArrays, vae) -> None:
    """Store the VAE posterior of the clip and of each reference frame (one latent frame each)."""
    mean, logvar = encode_posterior(vae, torch.from_numpy(clip.frames)[None])
    r_mean, r_logvar = encode_posterior(vae, torch.from_numpy(clip.ref_frames)[:, None])
    clip.latents = {
        "latent_mean": mean[0].numpy(),
        "latent_logvar": logvar[0].numpy(),
        "ref_latent_mean": r_mean[:, :, 0].permute(1, 0, 2, 3).numpy(),
        "ref_latent_logvar": r_logvar[:, :, 0].permute(1, 0, 2, 3).numpy(),
    }


def build_corpus_shards(
    corpus_dir: str | Path,
    out_dir: str | Path,
    cutting: ClipCutting,
    extractor: WhisperFeatureExtractor,
    vae=None,
) -> list[Path]:
    """Write shards for every clip of a generated corpus.

    Args:
        corpus_dir: Folder written by :func:`data_prep.synthetic.corpus.generate_corpus`.
        out_dir: Shard folder (``shard-NNNNNN.tar`` + ``.idx.json``).
        cutting: Clip settings.
        extractor: Whisper feature extractor.
        vae: Optional frozen VAE; when given, samples carry cached latents.

    Returns:
        The shard paths.
    """
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    fingerprint = hashlib.sha256(
        json.dumps({"cutting": asdict(cutting), "whisper": extractor.extra_repr()}, sort_keys=True).encode()
    ).hexdigest()[:16]
    with ShardWriter(out_dir, samples_per_shard=cutting.samples_per_shard) as writer:
        for entry in load_manifest(corpus_dir):
            for clip in video_clips(entry, corpus_dir, cutting, extractor, fingerprint):
                if vae is not None:
                    attach_latents(clip, vae)
                writer.write(encode_sample(clip))
    return writer.written
