"""Decoding one shard sample (raw tar member bytes) into arrays, checked against the schema."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import decord
import numpy as np

from trainer.data.buckets import Compression
from trainer.data.schema import (
    LATENT_MEMBERS,
    FeatureSpec,
    ShardSampleError,
    check_array,
    check_members,
    check_record,
    expected_feature_rows,
)


@dataclass
class ClipSample:
    """A decoded training clip at its stored resolution.

    Attributes:
        key: ``clip_id``.
        shard: Shard the sample came from.
        frames: ``[F, H, W, 3]`` uint8 RGB.
        fps: Frame rate.
        whisper: ``[L, B, C]`` float16 features at 50 Hz from frame 0.
        lower_face_boxes: ``[F, 4]`` float32 pixels.
        face_boxes: ``[F, 4]`` float32 pixels.
        ref_frames: ``[R, H, W, 3]`` uint8.
        ref_lower_face_boxes: ``[R, 4]`` float32.
        caption: Caption or ``None``.
        record: The JSON record.
        latents: Optional ``{"latent_mean", "latent_logvar", "ref_latent_mean", "ref_latent_logvar"}``
            float16 arrays (raw VAE posterior).
    """

    key: str
    shard: str
    frames: np.ndarray
    fps: float
    whisper: np.ndarray
    lower_face_boxes: np.ndarray
    face_boxes: np.ndarray
    ref_frames: np.ndarray
    ref_lower_face_boxes: np.ndarray
    caption: str | None
    record: dict
    latents: dict[str, np.ndarray] | None


def decode_video(data: bytes, shard: str, key: str, member: str) -> tuple[np.ndarray, float]:
    """All frames of an encoded video held in memory.

    Returns:
        ``(frames [F, H, W, 3] uint8, average fps)``.

    Raises:
        ShardSampleError: The bytes do not decode.
    """
    try:
        reader = decord.VideoReader(io.BytesIO(data), num_threads=1)
        frames = reader.get_batch(list(range(len(reader)))).asnumpy()
        return frames, float(reader.get_avg_fps())
    except Exception as err:  # decord raises its own DECORDError and RuntimeError alike
        raise ShardSampleError(shard, key, f"member '{member}' does not decode as video: {err}") from err


def read_npy(data: bytes, shard: str, key: str, member: str) -> np.ndarray:
    """A ``.npy`` member (no pickle); a malformed one raises :class:`ShardSampleError` naming it."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:
        raise ShardSampleError(shard, key, f"member '{member}' is not a .npy array: {err}") from err


@dataclass
class SampleMetadata:
    """A sample's checked record and small arrays (everything but the videos).

    Attributes:
        key: ``clip_id``.
        shard: Shard URL.
        members: Member name → bytes.
        record: The JSON record.
        whisper: ``[L, B, C]`` features.
        lower_face_boxes: ``[F, 4]`` float32.
        face_boxes: ``[F, 4]`` float32.
        ref_lower_face_boxes: ``[R, 4]`` float32.
    """

    key: str
    shard: str
    members: dict
    record: dict
    whisper: np.ndarray
    lower_face_boxes: np.ndarray
    face_boxes: np.ndarray
    ref_lower_face_boxes: np.ndarray


def read_metadata(raw: dict, features: FeatureSpec) -> SampleMetadata:
    """Check a raw sample against the schema without decoding its videos.

    Args:
        raw: ``{"__key__", "__url__", "<member>": bytes, …}`` as ``webdataset`` yields it.
        features: Expected feature layout.

    Raises:
        ShardSampleError: A member is missing, malformed or of the wrong shape.
    """
    key = str(raw.get("__key__", "?"))
    shard = str(raw.get("__url__", "?"))
    members = {k: v for k, v in raw.items() if not k.startswith("__")}
    check_members(members, shard, key)
    try:
        record = json.loads(members["json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ShardSampleError(shard, key, f"member 'json' is not JSON: {err}") from err
    check_record(record, shard, key)
    num_frames, fps = int(record["num_frames"]), float(record["fps"])
    whisper = read_npy(members["whisper.npy"], shard, key, "whisper.npy")
    check_array(whisper, (None, features.layers, features.dim), "whisper.npy", shard, key)
    want_rows = expected_feature_rows(num_frames, fps, features.rate)
    if abs(whisper.shape[0] - want_rows) > 1:
        raise ShardSampleError(
            shard,
            key,
            f"member 'whisper.npy' has {whisper.shape[0]} rows; {num_frames} frames at {fps} fps "
            f"need {want_rows} at {features.rate} Hz",
        )
    if not np.isfinite(whisper).all():
        raise ShardSampleError(shard, key, "member 'whisper.npy' holds NaN or inf")
    lower = read_npy(members["lower_face_boxes.npy"], shard, key, "lower_face_boxes.npy").astype(np.float32)
    check_array(lower, (num_frames, 4), "lower_face_boxes.npy", shard, key)
    face = read_npy(members["face_boxes.npy"], shard, key, "face_boxes.npy").astype(np.float32)
    check_array(face, (num_frames, 4), "face_boxes.npy", shard, key)
    num_refs = int(record["num_reference_frames"])
    ref_lower = read_npy(members["ref_lower_face_boxes.npy"], shard, key, "ref_lower_face_boxes.npy").astype(np.float32)
    check_array(ref_lower, (num_refs, 4), "ref_lower_face_boxes.npy", shard, key)
    return SampleMetadata(key, shard, members, record, whisper.astype(np.float16, copy=False), lower, face, ref_lower)


def has_latents(meta: SampleMetadata) -> bool:
    """The sample carries the four cached-latent members."""
    return all(m in meta.members for m in LATENT_MEMBERS)


def read_latents(meta: SampleMetadata, compression: Compression) -> dict[str, np.ndarray]:
    """The cached VAE posterior, checked against the record and the VAE's factors ``s``, ``t``.

    Shapes: ``[C, (F − 1)/t + 1, H/s, W/s]`` for the clip's ``F`` frames, ``[C, R, H/s, W/s]`` for its refs.

    Raises:
        ShardSampleError: A latent member is malformed or of the wrong shape.
    """
    rec = meta.record
    num_frames, refs = int(rec["num_frames"]), int(rec["num_reference_frames"])
    h, w = int(rec["height"]) // compression.spatial, int(rec["width"]) // compression.spatial
    latents = {m.removesuffix(".npy"): read_npy(meta.members[m], meta.shard, meta.key, m) for m in LATENT_MEMBERS}
    chans = latents["latent_mean"].shape[0] if latents["latent_mean"].ndim == 4 else None
    t_lat = compression.latent_frames(num_frames)
    for name, frames in (
        ("latent_mean", t_lat),
        ("latent_logvar", t_lat),
        ("ref_latent_mean", refs),
        ("ref_latent_logvar", refs),
    ):
        check_array(latents[name], (chans, frames, h, w), f"{name}.npy", meta.shard, meta.key)
    return latents


def decode_sample(raw: dict, features: FeatureSpec, latents: Compression | None = None) -> ClipSample:
    """Decode and validate a whole webdataset sample (every frame; for inspection and tests).

    Args:
        raw: ``{"__key__", "__url__", "<member>": bytes, …}`` as ``webdataset`` yields it.
        features: Expected feature layout.
        latents: Read the optional latent members, when all four are present, checked against these VAE
            factors (``None``: leave them).

    Returns:
        The decoded clip.

    Raises:
        ShardSampleError: A member is missing, does not decode or has the wrong shape.
    """
    meta = read_metadata(raw, features)
    key, shard, members, record = meta.key, meta.shard, meta.members, meta.record
    num_frames = int(record["num_frames"])
    height, width = int(record["height"]), int(record["width"])
    frames, _ = decode_video(members["video.mp4"], shard, key, "video.mp4")
    check_array(frames, (num_frames, height, width, 3), "video.mp4", shard, key)
    refs, _ = decode_video(members["ref.mp4"], shard, key, "ref.mp4")
    num_refs = int(record["num_reference_frames"])
    check_array(refs, (num_refs, height, width, 3), "ref.mp4", shard, key)

    cached = read_latents(meta, latents) if latents is not None and has_latents(meta) else None
    return ClipSample(
        key=key,
        shard=shard,
        frames=frames,
        fps=float(record["fps"]),
        whisper=meta.whisper,
        lower_face_boxes=meta.lower_face_boxes,
        face_boxes=meta.face_boxes,
        ref_frames=refs,
        ref_lower_face_boxes=meta.ref_lower_face_boxes,
        caption=record.get("caption"),
        record=record,
        latents=cached,
    )
