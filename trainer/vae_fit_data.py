"""The clips a VAE fit reads and the windows it trains on (:mod:`trainer.vae_fit`).

Clips come from data_prep's shards (``video.mp4``, ``lower_face_boxes.npy``) and are held in memory; a batch
is random windows of them, whole frames or crops around the lower face, with per-pixel reconstruction weights
that favour the lower face.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import webdataset as wds

from trainer.data.decode import decode_video, read_npy
from trainer.data.schema import ShardSampleError
from trainer.data.shard_paths import expand_shards


@dataclass
class FitClip:
    """A clip the VAE is fitted on.

    Attributes:
        frames: ``[F, H, W, 3]`` uint8.
        lower_face_boxes: ``[F, 4]`` float32 pixels (NaN rows: no face).
        source: The source video the clip was cut from (its record's ``source``).
    """

    frames: np.ndarray
    lower_face_boxes: np.ndarray
    source: str = ""


def read_fit_clips(shards: str, limit: int) -> list[FitClip]:
    """The first ``limit`` clips of the shards, decoded (shard order).

    Raises:
        FileNotFoundError: No shard matches.
        ShardSampleError: A sample lacks a member or does not decode (names shard, key and member).
    """
    clips = []
    for url in expand_shards(shards, key="shards"):
        for raw in wds.tarfile_samples([{"url": url}]):
            key = raw.get("__key__", "?")
            for member in ("mp4", "lower_face_boxes.npy"):
                name = "video.mp4" if member == "mp4" else member
                if name not in raw and member not in raw:
                    raise ShardSampleError(url, key, f"member '{name}' is missing")
            frames, _ = decode_video(raw.get("video.mp4", raw.get("mp4")), url, key, "video.mp4")
            boxes = read_npy(raw["lower_face_boxes.npy"], url, key, "lower_face_boxes.npy").astype(np.float32)
            if boxes.shape != (frames.shape[0], 4):
                raise ShardSampleError(url, key, f"lower_face_boxes.npy has shape {boxes.shape}, video {frames.shape}")
            source = json.loads(raw["json"]).get("source", url) if "json" in raw else url
            clips.append(FitClip(frames, boxes, str(source)))
            if len(clips) == limit:
                return clips
    return clips


class WindowSampler:
    """Random windows of the fit clips as VAE batches with their reconstruction weights.

    Args:
        clips: The clips (every frame the same size, sides multiples of 32).
        mouth_weight: Weight inside the lower-face boxes.
        rng: Source of the draws (its state is part of the resumable state).
    """

    def __init__(self, clips: list[FitClip], mouth_weight: float, rng: np.random.Generator):
        self.clips = clips
        self.mouth_weight = mouth_weight
        self.rng = rng

    def batch(self, size: int, frames: int, crop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` windows of ``frames`` frames, whole or cropped to ``crop``² pixels around the lower face.

        Crops are aligned to the 32-pixel latent grid, so the VAE sees the mouth at the token positions it
        has in a whole frame.

        Returns:
            ``(video [B, 3, F, H, W] in [-1, 1], weight [B, 1, F, H, W])``.
        """
        videos, weights = [], []
        for _ in range(size):
            clip = self.clips[int(self.rng.integers(len(self.clips)))]
            start = int(self.rng.integers(0, clip.frames.shape[0] - frames + 1))
            boxes = clip.lower_face_boxes[start : start + frames]
            video = clip.frames[start : start + frames]
            weight = self.box_weight(boxes, clip.frames.shape[1:3])
            if crop is not None:
                y0, x0 = self.crop_origin(boxes, clip.frames.shape[1:3], crop)
                video = video[:, y0 : y0 + crop, x0 : x0 + crop]
                weight = weight[:, y0 : y0 + crop, x0 : x0 + crop]
            videos.append(torch.from_numpy(np.ascontiguousarray(video)))
            weights.append(torch.from_numpy(np.ascontiguousarray(weight)))
        video = torch.stack(videos).permute(0, 4, 1, 2, 3).to(torch.float32).div(127.5).sub(1.0)
        return video, torch.stack(weights)[:, None]

    @staticmethod
    def crop_origin(boxes: np.ndarray, size: tuple[int, int], crop: int) -> tuple[int, int]:
        """Top-left corner (multiples of 32) of the ``crop``² window nearest the centre of the windows' boxes."""
        height, width = size
        ok = np.isfinite(boxes).all(axis=1)
        if not ok.any():
            return (height - crop) // 64 * 32, (width - crop) // 64 * 32
        b = boxes[ok]
        cy, cx = 0.5 * (b[:, 1].min() + b[:, 3].max()), 0.5 * (b[:, 0].min() + b[:, 2].max())
        y0 = int(np.clip(round((cy - crop / 2) / 32) * 32, 0, height - crop))
        x0 = int(np.clip(round((cx - crop / 2) / 32) * 32, 0, width - crop))
        return y0, x0

    def box_weight(self, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """``[F, H, W]`` float32: ``mouth_weight`` inside each frame's lower-face box, 1 elsewhere."""
        height, width = size
        weight = np.ones((boxes.shape[0], height, width), np.float32)
        for i, box in enumerate(boxes):
            if not np.isfinite(box).all():
                continue
            x0, y0 = max(int(math.floor(box[0])), 0), max(int(math.floor(box[1])), 0)
            x1, y1 = min(int(math.ceil(box[2])), width), min(int(math.ceil(box[3])), height)
            weight[i, y0:y1, x0:x1] = self.mouth_weight
        return weight
