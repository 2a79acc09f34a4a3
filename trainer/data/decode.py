"""Decoding one shard sample (raw tar member bytes) into arrays, checked against the schema."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import decord
import numpy as np

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


def _npy(data: bytes, shard: str, key: str, member: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:
        raise ShardSampleError(shard, key, f"member '{member}' is not a .npy array: {err}") from err


def decode_sample(raw: dict, features: FeatureSpec, decode_latents: bool = True) -> ClipSample:
    """Decode and validate a webdataset sample dict.

    Args:
        raw: ``{"__key__", "__url__", "<member>": bytes, …}`` as ``webdataset`` yields it.
        features: Expected feature layout.
        decode_latents: Read the optional latent members when all four are present.

    Returns:
        The decoded clip.

    Raises:
        ShardSampleError: A member is missing, does not decode or has the wrong shape.
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
    num_frames = int(record["num_frames"])
    fps = float(record["fps"])

    frames, _ = decode_video(members["video.mp4"], shard, key, "video.mp4")
    height, width = int(record["height"]), int(record["width"])
    check_array(frames, (num_frames, height, width, 3), "video.mp4", shard, key)

    whisper = _npy(members["whisper.npy"], shard, key, "whisper.npy")
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

    lower = _npy(members["lower_face_boxes.npy"], shard, key, "lower_face_boxes.npy").astype(np.float32)
    check_array(lower, (num_frames, 4), "lower_face_boxes.npy", shard, key)
    face = _npy(members["face_boxes.npy"], shard, key, "face_boxes.npy").astype(np.float32)
    check_array(face, (num_frames, 4), "face_boxes.npy", shard, key)

    refs, _ = decode_video(members["ref.mp4"], shard, key, "ref.mp4")
    num_refs = int(record["num_reference_frames"])
    check_array(refs, (num_refs, height, width, 3), "ref.mp4", shard, key)
    ref_lower = _npy(members["ref_lower_face_boxes.npy"], shard, key, "ref_lower_face_boxes.npy")
    check_array(ref_lower.astype(np.float32), (num_refs, 4), "ref_lower_face_boxes.npy", shard, key)

    latents = None
    if decode_latents and all(m in members for m in LATENT_MEMBERS):
        latents = {m.removesuffix(".npy"): _npy(members[m], shard, key, m) for m in LATENT_MEMBERS}
        t_lat = (num_frames - 1) // 8 + 1
        chans = latents["latent_mean"].shape[0] if latents["latent_mean"].ndim == 4 else None
        for name, frames_expected in (
            ("latent_mean", t_lat),
            ("latent_logvar", t_lat),
            ("ref_latent_mean", num_refs),
            ("ref_latent_logvar", num_refs),
        ):
            check_array(latents[name], (chans, frames_expected, height // 32, width // 32), f"{name}.npy", shard, key)

    return ClipSample(
        key=key,
        shard=shard,
        frames=frames,
        fps=fps,
        whisper=whisper.astype(np.float16, copy=False),
        lower_face_boxes=lower,
        face_boxes=face,
        ref_frames=refs,
        ref_lower_face_boxes=ref_lower.astype(np.float32),
        caption=record.get("caption"),
        record=record,
        latents=latents,
    )
