"""From a decoded clip to fixed-size training tensors, and batching them."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from trainer.data.decode import ClipSample
from trainer.data.schema import ShardSampleError


@dataclass
class TrainingClip:
    """One clip cut and resized for training.

    Attributes:
        key: ``clip_id``.
        frames: ``[F, H, W, 3]`` uint8.
        fps: Frame rate.
        frame_start: Index in the stored clip of ``frames[0]`` (audio features start at stored frame 0).
        whisper: ``[L, B, C]`` float16.
        lower_face_boxes: ``[F, 4]`` float32 pixels of the training resolution.
        ref_frames: ``[R, H, W, 3]`` uint8.
        ref_lower_face_boxes: ``[R, 4]`` float32.
        caption: Caption text.
        latents: Cached raw VAE posterior (``latent_mean``, ``latent_logvar``, ``ref_latent_mean``,
            ``ref_latent_logvar``) when it still matches the frames, else ``None``.
    """

    key: str
    frames: np.ndarray
    fps: float
    frame_start: int
    whisper: np.ndarray
    lower_face_boxes: np.ndarray
    ref_frames: np.ndarray
    ref_lower_face_boxes: np.ndarray
    caption: str
    latents: dict[str, np.ndarray] | None


def _cover_resize(frames: np.ndarray, boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize so the frames cover ``height x width`` (aspect kept), centre-crop, and move the boxes along."""
    h0, w0 = frames.shape[1:3]
    if (h0, w0) == (height, width):
        return frames, boxes
    scale = max(height / h0, width / w0)
    nh, nw = max(height, round(h0 * scale)), max(width, round(w0 * scale))
    oy, ox = (nh - height) // 2, (nw - width) // 2
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(f, (nw, nh), interpolation=interp)[oy : oy + height, ox : ox + width] for f in frames])
    b = boxes.astype(np.float32) * np.float32(scale) - np.array([ox, oy, ox, oy], dtype=np.float32)
    b = np.clip(b, 0, np.array([width, height, width, height], dtype=np.float32))
    return np.ascontiguousarray(out), b


def fit_clip(
    sample: ClipSample,
    num_frames: int,
    height: int,
    width: int,
    num_reference_frames: int,
    rng: np.random.Generator,
    default_caption: str,
) -> TrainingClip:
    """Cut ``num_frames`` frames at a random start and resize to the training resolution.

    Args:
        sample: Decoded clip.
        num_frames: Frames to keep (``8k+1``).
        height: Training height (multiple of 32).
        width: Training width (multiple of 32).
        num_reference_frames: Reference frames to keep (the first ones stored).
        rng: Random source for the start frame.
        default_caption: Caption for samples without one.

    Returns:
        The training clip.

    Raises:
        ShardSampleError: The clip is shorter than ``num_frames`` or has too few reference frames.
    """
    stored = sample.frames.shape[0]
    if stored < num_frames:
        raise ShardSampleError(sample.shard, sample.key, f"clip has {stored} frames, training needs {num_frames}")
    if sample.ref_frames.shape[0] < num_reference_frames:
        raise ShardSampleError(
            sample.shard,
            sample.key,
            f"clip has {sample.ref_frames.shape[0]} reference frames, objective.num_reference_frames="
            f"{num_reference_frames}",
        )
    start = int(rng.integers(0, stored - num_frames + 1))
    frames, boxes = _cover_resize(
        sample.frames[start : start + num_frames],
        sample.lower_face_boxes[start : start + num_frames],
        height,
        width,
    )
    refs, ref_boxes = _cover_resize(
        sample.ref_frames[:num_reference_frames],
        sample.ref_lower_face_boxes[:num_reference_frames],
        height,
        width,
    )
    same_geometry = start == 0 and stored == num_frames and sample.frames.shape[1:3] == (height, width)
    latents = None
    if sample.latents is not None and same_geometry:
        latents = dict(sample.latents)
        latents["ref_latent_mean"] = latents["ref_latent_mean"][:, :num_reference_frames]
        latents["ref_latent_logvar"] = latents["ref_latent_logvar"][:, :num_reference_frames]
    return TrainingClip(
        key=sample.key,
        frames=frames,
        fps=sample.fps,
        frame_start=start,
        whisper=sample.whisper,
        lower_face_boxes=boxes,
        ref_frames=refs,
        ref_lower_face_boxes=ref_boxes,
        caption=sample.caption or default_caption,
        latents=latents,
    )


def collate_clips(clips: list[TrainingClip]) -> dict:
    """Stack training clips into a batch (features zero-padded to the longest).

    Returns:
        ``frames [B, F, H, W, 3]`` uint8, ``fps [B]``, ``frame_start [B]``, ``whisper [B, L, Bl, C]``
        float16, ``whisper_len [B]``, ``lower_face_boxes [B, F, 4]``, ``ref_frames [B, R, H, W, 3]``,
        ``ref_lower_face_boxes [B, R, 4]``, ``captions`` and ``keys`` (lists), and ``latents`` (dict of
        ``[B, …]`` float32 tensors) only when every clip carries usable cached latents.
    """
    max_len = max(c.whisper.shape[0] for c in clips)
    whisper = np.zeros((len(clips), max_len, *clips[0].whisper.shape[1:]), dtype=np.float16)
    for i, c in enumerate(clips):
        whisper[i, : c.whisper.shape[0]] = c.whisper
    batch = {
        "frames": torch.from_numpy(np.stack([c.frames for c in clips])),
        "fps": torch.tensor([c.fps for c in clips], dtype=torch.float32),
        "frame_start": torch.tensor([c.frame_start for c in clips], dtype=torch.long),
        "whisper": torch.from_numpy(whisper),
        "whisper_len": torch.tensor([c.whisper.shape[0] for c in clips], dtype=torch.long),
        "lower_face_boxes": torch.from_numpy(np.stack([c.lower_face_boxes for c in clips])),
        "ref_frames": torch.from_numpy(np.stack([c.ref_frames for c in clips])),
        "ref_lower_face_boxes": torch.from_numpy(np.stack([c.ref_lower_face_boxes for c in clips])),
        "captions": [c.caption for c in clips],
        "keys": [c.key for c in clips],
    }
    if all(c.latents is not None for c in clips):
        batch["latents"] = {
            name: torch.from_numpy(np.stack([c.latents[name] for c in clips])).float() for name in clips[0].latents
        }
    return batch
