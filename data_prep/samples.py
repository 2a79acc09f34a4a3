"""Assembling one shard sample in the DESIGN §5 schema from in-memory arrays."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.audio import AUDIO_RATE
from data_prep.config import DataPrepConfig
from data_prep.media import encode_mp4, encode_npy, encode_wav
from trainer.data.schema import SCHEMA_VERSION


def make_clip_id(source_digest: str, start: int, end: int, settings_fingerprint: str) -> str:
    """Deterministic clip id: a hash of the source's content, the frame span and the settings that shaped it.

    Args:
        source_digest: Hash of the source file's content (not its path: moved files keep their ids).
        start: First source frame of the clip.
        end: One past its last frame.
        settings_fingerprint: Hash of the settings that change the clip (fps, size, lengths, models).

    Returns:
        20 hex characters (safe as a WebDataset key: no dots or slashes).
    """
    blob = f"{source_digest}:{start}:{end}:{settings_fingerprint}".encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass
class ClipArrays:
    """Everything one training clip is made of, before encoding.

    Attributes:
        clip_id: Sample key.
        source: Source video (path or URI).
        span: ``(start, end)`` source frames, end exclusive.
        fps: Clip frame rate.
        frames: ``[F, H, W, 3]`` uint8, ``F = 8k+1``.
        audio: ``[S]`` float32 mono at ``sample_rate``.
        sample_rate: 16000 in the schema.
        whisper: ``[L, B, C]`` features at 50 Hz from frame 0.
        face_boxes: ``[F, 4]`` float32 pixels (NaN rows: no face).
        lower_face_boxes: ``[F, 4]`` float32.
        ref_frames: ``[R, H, W, 3]`` uint8 from ±5 s around the clip.
        ref_lower_face_boxes: ``[R, 4]`` float32.
        caption: Caption or ``None``.
        scores: Raw filter scores (SyncNet, HyperIQA, …) to keep with the sample.
        latents: Optional raw VAE posterior: ``latent_mean``, ``latent_logvar`` ``[C, T, h, w]`` and
            ``ref_latent_mean``, ``ref_latent_logvar`` ``[C, R, h, w]``.
    """

    clip_id: str
    source: str
    span: tuple[int, int]
    fps: float
    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    whisper: np.ndarray
    face_boxes: np.ndarray
    lower_face_boxes: np.ndarray
    ref_frames: np.ndarray
    ref_lower_face_boxes: np.ndarray
    caption: str | None = None
    scores: dict = field(default_factory=dict)
    latents: dict[str, np.ndarray] | None = None


@dataclass
class EncodedClip:
    """A clip whose videos are encoded already: what a shard sample holds, before serialisation.

    Attributes:
        clip_id: Sample key.
        source: Source video.
        span: ``(start, end)`` source frames.
        fps: Clip frame rate.
        num_frames: Frames of ``video_mp4``.
        size: ``(height, width)`` of the videos.
        video_mp4: The clip, H.264.
        audio: ``[S]`` float32 mono at ``sample_rate``.
        sample_rate: 16000 in the schema.
        whisper: ``[L, B, C]`` features.
        face_boxes: ``[F, 4]``.
        lower_face_boxes: ``[F, 4]``.
        ref_mp4: The reference frames, H.264.
        num_reference_frames: Frames of ``ref_mp4``.
        ref_lower_face_boxes: ``[R, 4]``.
        caption: Caption or ``None``.
        scores: Raw filter scores.
        latents: Optional raw VAE posteriors (see :class:`ClipArrays`).
    """

    clip_id: str
    source: str
    span: tuple[int, int]
    fps: float
    num_frames: int
    size: tuple[int, int]
    video_mp4: bytes
    audio: np.ndarray
    sample_rate: int
    whisper: np.ndarray
    face_boxes: np.ndarray
    lower_face_boxes: np.ndarray
    ref_mp4: bytes
    num_reference_frames: int
    ref_lower_face_boxes: np.ndarray
    caption: str | None = None
    scores: dict = field(default_factory=dict)
    latents: dict[str, np.ndarray] | None = None


def sample_members(clip: EncodedClip) -> dict:
    """The shard members of an encoded clip (``{"__key__": …, "video.mp4": bytes, …}``)."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "clip_id": clip.clip_id,
        "source": clip.source,
        "span": [int(clip.span[0]), int(clip.span[1])],
        "fps": float(clip.fps),
        "num_frames": int(clip.num_frames),
        "width": int(clip.size[1]),
        "height": int(clip.size[0]),
        "sample_rate": int(clip.sample_rate),
        "audio_feature_rate": 50.0,
        "num_reference_frames": int(clip.num_reference_frames),
        "caption": clip.caption,
        "scores": clip.scores,
    }
    sample = {
        "__key__": clip.clip_id,
        "video.mp4": clip.video_mp4,
        "audio.wav": encode_wav(clip.audio, clip.sample_rate),
        "whisper.npy": encode_npy(clip.whisper.astype(np.float16)),
        "face_boxes.npy": encode_npy(clip.face_boxes.astype(np.float32)),
        "lower_face_boxes.npy": encode_npy(clip.lower_face_boxes.astype(np.float32)),
        "ref.mp4": clip.ref_mp4,
        "ref_lower_face_boxes.npy": encode_npy(clip.ref_lower_face_boxes.astype(np.float32)),
        "json": json.dumps(record, sort_keys=True).encode("utf-8"),
    }
    if clip.latents is not None:
        for name, arr in clip.latents.items():
            sample[f"{name}.npy"] = encode_npy(arr.astype(np.float16))
    return sample


def encode_sample(clip: ClipArrays, crf: int = 18) -> dict:
    """Encode a clip into shard members (``{"__key__": …, "video.mp4": bytes, …}``)."""
    num_frames, height, width = clip.frames.shape[:3]
    encoded = EncodedClip(
        clip_id=clip.clip_id,
        source=clip.source,
        span=clip.span,
        fps=clip.fps,
        num_frames=num_frames,
        size=(height, width),
        video_mp4=encode_mp4(clip.frames, clip.fps, crf),
        audio=clip.audio,
        sample_rate=clip.sample_rate,
        whisper=clip.whisper,
        face_boxes=clip.face_boxes,
        lower_face_boxes=clip.lower_face_boxes,
        ref_mp4=encode_mp4(clip.ref_frames, clip.fps, crf),
        num_reference_frames=clip.ref_frames.shape[0],
        ref_lower_face_boxes=clip.ref_lower_face_boxes,
        caption=clip.caption,
        scores=clip.scores,
        latents=clip.latents,
    )
    return sample_members(encoded)


def clip_latents(frames: np.ndarray, vae) -> dict[str, np.ndarray]:
    """The VAE posterior of a clip's frames ``[F, H, W, 3]``: ``latent_mean``, ``latent_logvar`` ``[C, T, h, w]``."""
    import torch

    from trainer.model.vae import encode_posterior  # diffusers: only when latents are cached

    mean, logvar = encode_posterior(vae, torch.from_numpy(frames)[None])
    return {"latent_mean": mean[0].numpy(), "latent_logvar": logvar[0].numpy()}


def reference_latents(ref_frames: np.ndarray, vae) -> dict[str, np.ndarray]:
    """The VAE posterior of each reference frame (one latent frame each): ``ref_latent_*`` ``[C, R, h, w]``."""
    import torch

    from trainer.model.vae import encode_posterior

    r_mean, r_logvar = encode_posterior(vae, torch.from_numpy(ref_frames)[:, None])
    return {
        "ref_latent_mean": r_mean[:, :, 0].permute(1, 0, 2, 3).numpy(),
        "ref_latent_logvar": r_logvar[:, :, 0].permute(1, 0, 2, 3).numpy(),
    }


def attach_latents(clip: ClipArrays, vae) -> None:
    """Store the VAE posterior of the clip and of each reference frame (one latent frame each)."""
    clip.latents = {**clip_latents(clip.frames, vae), **reference_latents(clip.ref_frames, vae)}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content (clip ids follow content, not names)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def clip_settings_fingerprint(cfg: DataPrepConfig) -> str:
    """Hash of the settings that shape a clip's content (not the thresholds that judge it).

    ``audio`` names the decoding: clips (and SyncNet scores stored for them) from before the ffmpeg ``-ac 1``
    downmix, whose stereo audio was √2 too loud, get other ids and are never reused.
    """
    relevant = {"clips": [cfg.clips.num_frames, cfg.clips.fps], "audio_rate": AUDIO_RATE, "audio": "swr-ac1"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
