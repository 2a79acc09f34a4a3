"""Resolution buckets with an equal number of video tokens per batch (EditYourself §4.1, multi-resolution).

A bucket is a frame size ``(height, width)`` (multiples of the VAE's spatial factor ``s``, 32 for LTX), a
latent length ``T`` and a batch size ``b`` with ``b · T · (height/s) · (width/s) == tokens_per_batch``
exactly, so that no rank waits on another with a heavier batch. Each clip is resized at random to an area
in ``[min_mp, max_mp]`` megapixels with its aspect ratio kept, then placed in the bucket of nearest aspect
and area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Compression:
    """How the VAE maps video to latents, from ``model.vae`` (LTX-Video: 32 and 8).

    Attributes:
        spatial: Pixels per latent token side (``model.vae.spatial_compression``).
        temporal: Video frames per latent frame after frame 0, which is alone in latent frame 0
            (``model.vae.temporal_compression``).
    """

    spatial: int
    temporal: int

    @classmethod
    def of(cls, vae) -> Compression:
        """The factors of a ``model.vae`` config."""
        return cls(int(vae.spatial_compression), int(vae.temporal_compression))

    def latent_frames(self, video_frames: int) -> int:
        """Latent frames of a clip of ``video_frames`` frames (the whole latent frames it fills)."""
        return (video_frames - 1) // self.temporal + 1

    def video_frames(self, latent_frames: int) -> int:
        """Video frames of ``latent_frames`` latent frames."""
        return self.temporal * (latent_frames - 1) + 1


@dataclass(frozen=True)
class Bucket:
    """A batch shape.

    Attributes:
        height: Frame height in pixels.
        width: Frame width in pixels.
        latent_frames: ``T``; the clip has ``temporal · (T − 1) + 1`` video frames.
        batch_size: Samples per batch.
        compression: The VAE's factors the shape was made for.
    """

    height: int
    width: int
    latent_frames: int
    batch_size: int
    compression: Compression

    @property
    def video_frames(self) -> int:
        """Video frames per sample."""
        return self.compression.video_frames(self.latent_frames)

    @property
    def tokens_per_frame(self) -> int:
        """Latent tokens per latent frame."""
        s = self.compression.spatial
        return (self.height // s) * (self.width // s)

    @property
    def tokens(self) -> int:
        """Video tokens per batch."""
        return self.batch_size * self.latent_frames * self.tokens_per_frame

    @property
    def name(self) -> str:
        """Short label, e.g. ``512x768x16@4``."""
        return f"{self.height}x{self.width}x{self.latent_frames}@{self.batch_size}"


def make_buckets(
    tokens_per_batch: int, min_mp: float, max_mp: float, max_frames: int, compression: Compression
) -> list[Bucket]:
    """Every frame size within the area range that fits the token budget exactly.

    For each size the longest clip (largest ``T`` up to the latent frames of ``max_frames``) with an integer
    batch size is kept.

    Args:
        tokens_per_batch: Video tokens every batch holds.
        min_mp: Smallest area in megapixels.
        max_mp: Largest area in megapixels.
        max_frames: Longest clip in video frames (``data.max_frames``).
        compression: The VAE's factors (:meth:`Compression.of` of ``model.vae``).

    Returns:
        Buckets sorted by area then aspect; empty when the budget fits no size in the range.
    """
    out = []
    px = compression.spatial
    max_latent_frames = compression.latent_frames(max_frames)
    lo = max(1, math.floor(math.sqrt(min_mp * 1e6 / 4) / px))
    hi = math.ceil(math.sqrt(max_mp * 1e6 * 4) / px)
    for hp in range(lo, hi + 1):
        for wp in range(lo, hi + 1):
            area = hp * wp * px * px / 1e6
            if not (min_mp <= area <= max_mp) or not (0.25 <= hp / wp <= 4.0):
                continue
            per_frame = hp * wp
            if tokens_per_batch % per_frame:
                continue
            frames_times_batch = tokens_per_batch // per_frame
            for t in range(min(max_latent_frames, frames_times_batch), 0, -1):
                if frames_times_batch % t == 0:
                    out.append(Bucket(hp * px, wp * px, t, frames_times_batch // t, compression))
                    break
    return sorted(out, key=lambda b: (b.height * b.width, b.height / b.width))


def choose_bucket(buckets: list[Bucket], area_mp: float, aspect: float, max_latent_frames: int) -> Bucket | None:
    """The bucket nearest to a target area and aspect (height/width) among those the clip is long enough for.

    Distance is measured in log-aspect (weighted 4x: a distorted face is worse than a size change) plus
    log-area.

    Returns:
        The bucket, or ``None`` when the clip is shorter than every bucket.
    """
    best, best_d = None, float("inf")
    for b in buckets:
        if b.latent_frames > max_latent_frames:
            continue
        d = 4 * abs(math.log(b.height / b.width / aspect)) + abs(math.log(b.height * b.width / 1e6 / area_mp))
        if d < best_d:
            best, best_d = b, d
    return best


def random_area(rng: np.random.Generator, min_mp: float, max_mp: float, source_mp: float) -> float:
    """Target area drawn log-uniformly in ``[min_mp, max_mp]`` without upscaling beyond the source."""
    top = max(min_mp, min(max_mp, source_mp))
    return float(math.exp(rng.uniform(math.log(min_mp), math.log(top)))) if top > min_mp else min_mp
