"""Planning a sample from its metadata, then decoding only what the plan needs.

Planning reads the JSON record and the small arrays (no video decoding): it checks the schema, draws the
random resize and temporal crop from a generator seeded by ``(seed, epoch, key)`` and picks the bucket.
Because plans never touch pixels, a resumed loader can replay them cheaply to find its place again.
Decoding then reads only the planned frames with decord, already scaled on decode.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import decord
import numpy as np

from trainer.data.buckets import Bucket, Compression, choose_bucket, random_area
from trainer.data.decode import SampleMetadata, has_latents, read_latents, read_metadata
from trainer.data.schema import FeatureSpec, ShardSampleError
from trainer.data.transforms import TrainingClip


@dataclass
class Plan:
    """What to make of one raw sample.

    Attributes:
        key: ``clip_id``.
        shard: Shard URL.
        meta: The sample's checked record, small arrays and member bytes.
        bucket: Batch shape it goes to.
        start: First stored frame of the crop.
        cached: Train from the stored VAE posterior (no video decoding, no VAE).
    """

    key: str
    shard: str
    meta: SampleMetadata
    bucket: Bucket
    start: int
    cached: bool

    @property
    def group_key(self) -> tuple:
        """Samples sharing this key can be batched together."""
        return (self.bucket, self.cached)


def plan_sample(
    raw: dict,
    epoch: int,
    seed: int,
    buckets: list[Bucket],
    features: FeatureSpec,
    num_refs: int,
    min_mp: float,
    max_mp: float,
    use_cached_latents: bool,
    compression: Compression,
) -> Plan:
    """Validate a raw sample's schema and decide its bucket and crop.

    Raises:
        ShardSampleError: A member is missing or malformed, or no bucket fits the clip.
    """
    meta = read_metadata(raw, features)
    key, shard, record = meta.key, meta.shard, meta.record
    frames, h, w = int(record["num_frames"]), int(record["height"]), int(record["width"])
    refs = int(record["num_reference_frames"])
    if refs < num_refs:
        raise ShardSampleError(shard, key, f"{refs} reference frames, training uses {num_refs}")
    rng = np.random.default_rng([seed, epoch, zlib.crc32(key.encode())])
    max_t = compression.latent_frames(frames)
    if use_cached_latents and has_latents(meta):
        read_latents(meta, compression)  # a malformed latent is skipped here, before it reaches a batch
        # Cached latents fix the resolution; a causal VAE lets the clip be cut after any latent frame.
        bucket = next((b for b in buckets if (b.height, b.width) == (h, w) and b.latent_frames <= max_t), None)
        if bucket is not None:
            return Plan(key, shard, meta, bucket, 0, True)
    area = random_area(rng, min_mp, max_mp, h * w / 1e6)
    bucket = choose_bucket(buckets, area, h / w, max_t)
    if bucket is None:
        raise ShardSampleError(shard, key, f"{frames} frames fit no bucket (the shortest needs more)")
    start = int(rng.integers(0, frames - bucket.video_frames + 1))
    return Plan(key, shard, meta, bucket, start, False)


def _cover(src_h: int, src_w: int, h: int, w: int) -> tuple[int, int, int, int, float]:
    """Scaled size covering ``h x w`` with the aspect kept, the crop offsets, and the scale."""
    scale = max(h / src_h, w / src_w)
    nh, nw = max(h, round(src_h * scale)), max(w, round(src_w * scale))
    return nh, nw, (nh - h) // 2, (nw - w) // 2, scale


def _decode_frames(
    data: bytes, indices: list[int], src_hw: tuple[int, int], out_hw: tuple[int, int], plan: Plan, member: str
) -> tuple[np.ndarray, float, tuple[int, int]]:
    nh, nw, oy, ox, scale = _cover(*src_hw, *out_hw)
    # Scaling inside the decoder costs even at scale 1: ask for it only when the size changes.
    size = {} if (nh, nw) == tuple(src_hw) else {"width": nw, "height": nh}
    try:
        reader = decord.VideoReader(io.BytesIO(data), num_threads=1, **size)
        if len(reader) <= max(indices):
            raise ShardSampleError(plan.shard, plan.key, f"member '{member}' has {len(reader)} frames")
        frames = reader.get_batch(indices).asnumpy()
    except ShardSampleError:
        raise
    except Exception as err:  # decord raises its own error types for damaged streams
        raise ShardSampleError(plan.shard, plan.key, f"member '{member}' does not decode as video: {err}") from err
    return np.ascontiguousarray(frames[:, oy : oy + out_hw[0], ox : ox + out_hw[1]]), scale, (oy, ox)


def _move_boxes(boxes: np.ndarray, scale: float, offset: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
    oy, ox = offset
    b = boxes.astype(np.float32) * np.float32(scale) - np.array([ox, oy, ox, oy], np.float32)
    return np.clip(b, 0, np.array([hw[1], hw[0], hw[1], hw[0]], np.float32))


def decode_plan(plan: Plan, num_refs: int, default_caption: str) -> TrainingClip:
    """Decode what the plan needs: the cropped frames at the bucket size (or the cached latents).

    Raises:
        ShardSampleError: A member does not decode.
    """
    rec, members, b = plan.meta.record, plan.meta.members, plan.bucket
    src_hw = (int(rec["height"]), int(rec["width"]))
    out_hw = (b.height, b.width)
    f = b.video_frames
    lower = plan.meta.lower_face_boxes[plan.start : plan.start + f]
    face = plan.meta.face_boxes[plan.start : plan.start + f]
    ref_lower = plan.meta.ref_lower_face_boxes[:num_refs]
    whisper = plan.meta.whisper
    latents = None
    if plan.cached:
        t = b.latent_frames
        latents = read_latents(plan.meta, b.compression)
        latents["latent_mean"] = latents["latent_mean"][:, :t]
        latents["latent_logvar"] = latents["latent_logvar"][:, :t]
        latents["ref_latent_mean"] = latents["ref_latent_mean"][:, :num_refs]
        latents["ref_latent_logvar"] = latents["ref_latent_logvar"][:, :num_refs]
        frames = refs = None
        boxes, ref_boxes = lower.astype(np.float32), ref_lower.astype(np.float32)
        face_boxes = face.astype(np.float32)
    else:
        frames, scale, offset = _decode_frames(
            members["video.mp4"], list(range(plan.start, plan.start + f)), src_hw, out_hw, plan, "video.mp4"
        )
        refs, _, _ = _decode_frames(members["ref.mp4"], list(range(num_refs)), src_hw, out_hw, plan, "ref.mp4")
        boxes = _move_boxes(lower, scale, offset, out_hw)
        face_boxes = _move_boxes(face, scale, offset, out_hw)
        ref_boxes = _move_boxes(ref_lower, scale, offset, out_hw)
    return TrainingClip(
        key=plan.key,
        frames=frames,
        fps=float(rec["fps"]),
        frame_start=plan.start,
        whisper=whisper,
        lower_face_boxes=boxes,
        face_boxes=face_boxes,
        ref_frames=refs,
        ref_lower_face_boxes=ref_boxes,
        caption=rec.get("caption") or default_caption,
        latents=latents,
        num_frames=f,
    )
