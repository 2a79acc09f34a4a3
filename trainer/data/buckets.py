"""Resolution buckets with an equal number of video tokens per batch (EditYourself §4.1, multi-resolution).

A bucket is a frame size ``(height, width)`` (multiples of the VAE's spatial factor ``s``, 32 for LTX), a
latent length ``T`` and a batch size ``b`` with ``b · T · (height/s) · (width/s) == tokens_per_batch``
exactly, so that no rank waits on another with a heavier batch. Each clip is resized at random to an area
in ``[min_mp, max_mp]`` megapixels with its aspect ratio kept, then placed in the bucket of nearest aspect
and area.

Exact equality leaves common video shapes without a bucket (at 24,576 tokens none is 16:9 or 9:16 and none
reaches 2 MP). Named aspects (``data.bucket_aspects``, e.g. ``16:9``) therefore get a ladder of sizes, one per
``√2`` area step from the smallest area to the largest: the size nearest the step among those within 3 % of
the aspect whose ``b · T`` (the longest ``T`` that does, at least half the longest clip's) fills the budget to
within ``data.bucket_tolerance``. Such a batch holds up to that share fewer tokens, and a rank holding it
finishes its step that much earlier. No padding token is added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from trainer.config.schema import DataConfig

# Area ratio between neighbouring sizes of an aspect's ladder.
AREA_STEP = math.sqrt(2.0)
# How far (in log height/width) a size on the latent grid may be from its named aspect.
ASPECT_SLACK = 0.03


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


def parse_aspect(text: str) -> float:
    """Height/width of an aspect written ``width:height`` (``"16:9"`` → 0.5625).

    Raises:
        ValueError: Not two positive numbers separated by ``:``.
    """
    parts = str(text).split(":")
    try:
        w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not an aspect written width:height, e.g. 16:9") from None
    if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
        raise ValueError(f"{text!r} is not an aspect written width:height of two positive numbers, e.g. 16:9")
    return h / w


def _fill(tokens_per_batch: int, per_frame: int, max_latent_frames: int, tolerance: float) -> tuple[int, int] | None:
    """``(T, b)`` with the longest ``T`` whose batch holds ``(1 − tolerance)·budget`` to ``budget`` tokens."""
    for t in range(min(max_latent_frames, tokens_per_batch // per_frame), 0, -1):
        b = tokens_per_batch // (t * per_frame)
        if b >= 1 and b * t * per_frame >= (1.0 - tolerance) * tokens_per_batch - 1e-9:
            return t, b
    return None


def _aspect_ladder(
    aspect: float,
    tokens_per_batch: int,
    min_mp: float,
    max_mp: float,
    max_latent_frames: int,
    tolerance: float,
    px: int,
    exact: dict[tuple[int, int], tuple[int, int]],
) -> list[tuple[int, int, int, int]]:
    """``(rows, cols, T, b)`` of ``aspect`` (height/width) nearest each rung of the area ladder within the range.

    Candidates are the token sizes within :data:`ASPECT_SLACK` of the aspect inside the range whose batch
    fills the budget to within ``tolerance`` with at least half the longest clip (a batch of stills teaches no
    motion), and the exact grid's sizes (``exact``: ``(rows, cols) → (T, b)``). Each rung takes the candidate of
    nearest area (the longer clip on a tie).
    """
    elong = max(aspect, 1.0 / aspect)
    candidates = []
    for short in range(1, math.isqrt(int(max_mp * 1e6 / (px * px))) + 1):
        # Searched over the short and long side so that w:h and h:w get mirrored sizes; a square aspect keeps
        # square sizes (a near-square one would have no mirror).
        longs = [short] if elong == 1.0 else range(max(short, round(short * elong) - 1), round(short * elong) + 2)
        for long in longs:
            rows, cols = (long, short) if aspect > 1 else (short, long)
            mp = rows * cols * px * px / 1e6
            if not min_mp <= mp <= max_mp or abs(math.log(rows / cols / aspect)) > ASPECT_SLACK:
                continue
            shape = exact.get((rows, cols)) or _fill(tokens_per_batch, rows * cols, max_latent_frames, tolerance)
            if shape is not None and shape[0] >= max(1, max_latent_frames // 2):
                candidates.append((rows, cols, *shape))
    out: list[tuple[int, int, int, int]] = []
    area = min_mp
    while candidates:
        best = min(candidates, key=lambda c: (abs(math.log(c[0] * c[1] * px * px / 1e6 / area)), -c[2]))
        if best not in out:
            out.append(best)
        if area >= max_mp:
            break
        area = min(area * AREA_STEP, max_mp)
    return out


def make_buckets(
    tokens_per_batch: int,
    min_mp: float,
    max_mp: float,
    max_frames: int,
    compression: Compression,
    aspects: Sequence[str] = (),
    tolerance: float = 0.0,
) -> list[Bucket]:
    """Every frame size within the area range that fits the token budget exactly, plus the named aspects' ladders.

    For each size the longest clip (largest ``T`` up to the latent frames of ``max_frames``) with an integer
    batch size is kept. Sizes of a named aspect without an exact bucket get one that fills the budget to
    within ``tolerance`` (see the module docstring).

    Args:
        tokens_per_batch: Video tokens every batch holds (at most, with ``tolerance``).
        min_mp: Smallest area in megapixels.
        max_mp: Largest area in megapixels.
        max_frames: Longest clip in video frames (``data.max_frames``).
        compression: The VAE's factors (:meth:`Compression.of` of ``model.vae``).
        aspects: Aspects written ``width:height`` (``data.bucket_aspects``).
        tolerance: Share of the budget an aspect bucket may leave empty (``data.bucket_tolerance``).

    Returns:
        Buckets sorted by area then aspect; empty when the budget fits no size in the range.

    Raises:
        ValueError: An aspect is not written ``width:height``.
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
    exact = {(b.height // px, b.width // px): (b.latent_frames, b.batch_size) for b in out}
    for aspect in aspects:
        for rows, cols, t, b in _aspect_ladder(
            parse_aspect(aspect), tokens_per_batch, min_mp, max_mp, max_latent_frames, tolerance, px, exact
        ):
            if (rows, cols) not in exact:
                out.append(Bucket(rows * px, cols * px, t, b, compression))
                exact[(rows, cols)] = (t, b)
    return sorted(out, key=lambda b: (b.height * b.width, b.height / b.width))


def buckets_for(data: DataConfig, compression: Compression) -> list[Bucket]:
    """The buckets of a ``data`` config (:func:`make_buckets` with its budget, range, aspects and tolerance)."""
    return make_buckets(
        data.tokens_per_batch,
        data.min_megapixels,
        data.max_megapixels,
        data.max_frames,
        compression,
        data.bucket_aspects,
        data.bucket_tolerance,
    )


def bucket_table(buckets: list[Bucket], tokens_per_batch: int) -> str:
    """A markdown table of buckets: size, aspect, megapixels, latent and video frames, batch size, fill."""
    lines = [
        "| bucket | height × width | aspect (w:h) | MP | T | frames | batch | tokens | fill |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for b in buckets:
        lines.append(
            f"| {b.name} | {b.height} × {b.width} | {b.width / b.height:.3f} | {b.height * b.width / 1e6:.2f} "
            f"| {b.latent_frames} | {b.video_frames} | {b.batch_size} | {b.tokens} "
            f"| {100 * b.tokens / tokens_per_batch:.1f} % |"
        )
    return "\n".join(lines)


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
