"""Training clips (decoded per plan) and batching them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TrainingClip:
    """One clip as a training step reads it.

    Attributes:
        key: ``clip_id``.
        frames: ``[F, H, W, 3]`` uint8 at the bucket size, or ``None`` when cached latents stand in.
        fps: Frame rate.
        frame_start: Index in the stored clip of the first frame (audio features start at stored frame 0).
        whisper: ``[L, B, C]`` float16.
        lower_face_boxes: ``[F, 4]`` float32 pixels at the training resolution.
        face_boxes: ``[F, 4]`` float32 pixels at the training resolution (the sampler's face/head masks).
        ref_frames: ``[R, H, W, 3]`` uint8, or ``None`` with cached latents.
        ref_lower_face_boxes: ``[R, 4]`` float32.
        caption: Caption text.
        latents: Cached raw VAE posterior (``latent_mean``, ``latent_logvar`` ``[C, T, h, w]``,
            ``ref_latent_mean``, ``ref_latent_logvar`` ``[C, R, h, w]``), or ``None``.
        num_frames: ``F``.
    """

    key: str
    frames: np.ndarray | None
    fps: float
    frame_start: int
    whisper: np.ndarray
    lower_face_boxes: np.ndarray
    face_boxes: np.ndarray
    ref_frames: np.ndarray | None
    ref_lower_face_boxes: np.ndarray
    caption: str
    latents: dict[str, np.ndarray] | None
    num_frames: int


def collate_clips(clips: list[TrainingClip]) -> dict:
    """Stack clips of one bucket into a batch (features zero-padded to the longest).

    Returns:
        ``fps [B]``, ``frame_start [B]``, ``whisper [B, L, Bl, C]`` float16, ``whisper_len [B]``,
        ``lower_face_boxes [B, F, 4]``, ``face_boxes [B, F, 4]``, ``ref_lower_face_boxes [B, R, 4]``,
        ``captions``, ``keys``,
        ``num_frames`` (int), and either ``frames [B, F, H, W, 3]`` + ``ref_frames [B, R, H, W, 3]`` uint8
        or ``latents`` (dict of ``[B, …]`` float32 tensors).
    """
    max_len = max(c.whisper.shape[0] for c in clips)
    whisper = np.zeros((len(clips), max_len, *clips[0].whisper.shape[1:]), dtype=np.float16)
    for i, c in enumerate(clips):
        whisper[i, : c.whisper.shape[0]] = c.whisper
    if len({c.num_frames for c in clips}) != 1 or len({c.latents is None for c in clips}) != 1:
        raise ValueError("a batch mixes clip lengths or cached/uncached samples; batch within one bucket")
    batch = {
        "fps": torch.tensor([c.fps for c in clips], dtype=torch.float32),
        "frame_start": torch.tensor([c.frame_start for c in clips], dtype=torch.long),
        "whisper": torch.from_numpy(whisper),
        "whisper_len": torch.tensor([c.whisper.shape[0] for c in clips], dtype=torch.long),
        "lower_face_boxes": torch.from_numpy(np.stack([c.lower_face_boxes for c in clips])),
        "face_boxes": torch.from_numpy(np.stack([c.face_boxes for c in clips])),
        "ref_lower_face_boxes": torch.from_numpy(np.stack([c.ref_lower_face_boxes for c in clips])),
        "captions": [c.caption for c in clips],
        "keys": [c.key for c in clips],
        "num_frames": clips[0].num_frames,
    }
    if clips[0].latents is not None:
        batch["latents"] = {
            name: torch.from_numpy(np.stack([c.latents[name] for c in clips])).float() for name in clips[0].latents
        }
    else:
        batch["frames"] = torch.from_numpy(np.stack([c.frames for c in clips]))
        batch["ref_frames"] = torch.from_numpy(np.stack([c.ref_frames for c in clips]))
    return batch


def batch_to_device(batch: dict, device: torch.device | str) -> dict:
    """The batch with its tensors (one level of nesting) on ``device``.

    The layout is fixed (:func:`collate_clips`), so a direct move replaces Lightning's generic collection walk,
    which costs milliseconds per step.
    """

    def move(value):
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return {k: move(v) for k, v in batch.items()}
