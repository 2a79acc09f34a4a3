"""Edit times on the latent timeline of the causal VAE (visual dialog editing, EditYourself §3.3).

Time mapping (8-frame resolution)
---------------------------------
The causal VAE maps latent frame 0 to video frame 0 and latent frame ``n ≥ 1`` to video frames
``8(n−1)+1 … 8n`` (:func:`trainer.model.masks.latent_frame_groups`), so video frame ``f`` lies in latent
frame ``⌈f/8⌉``. Edit times are resolved in three steps:

* a time ``t`` becomes the video frame ``f = round_half_up(t·fps)`` (the frame boundary nearest to ``t``);
* a *boundary* at video frame ``f`` (add position, start and end of a remove/retime span) snaps to the
  start of the latent frame containing ``f``, i.e. latent index ``⌈f/8⌉``. Both ends of a span move in the
  same direction, so a span of ``d`` seconds keeps ``≈ d·fps/8`` latent frames (error below one frame);
* a *duration* ``d`` (inserted content, retime target) becomes ``round_half_up(d·fps/8)`` latent frames.

A re-render span instead *covers* every latent frame that holds one of its video frames,
``[⌈f0/8⌉, ⌈(f1−1)/8⌉ + 1)``: re-rendering a frame too many is harmless, leaving half an awkward expression
untouched is not. Every edit refers to the **source** timeline (the timestamps the transcript diff
produces for the original audio); the edited timeline follows from the list as a whole.
"""

from __future__ import annotations

import math

import torch

from trainer.model.masks import latent_frame_groups

TEMPORAL_COMPRESSION = 8  # LTX-Video's; every function takes the VAE's own factor


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` rounds halves to even).

    The tiny epsilon absorbs float error in products such as ``0.1 · 25 = 2.5000000000000004`` or
    ``0.3 · 30 = 8.999999999999998``, which would otherwise flip frame boundaries.
    """
    return math.floor(x + 0.5 + 1e-6)


def seconds_to_video_frame(t: float, fps: float) -> int:
    """Video frame boundary nearest to ``t`` seconds: ``round_half_up(t·fps)``."""
    return round_half_up(t * fps)


def video_frame_to_latent(frame: int, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Latent frame holding video frame ``frame``: ``⌈frame/8⌉`` (frame 0 → latent 0)."""
    if frame < 0:
        raise ValueError(f"video frame {frame} is negative")
    return -(-frame // temporal_compression)


def seconds_to_latent_boundary(t: float, fps: float, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Latent index of the edit boundary at ``t`` seconds (start of the latent frame holding its video frame)."""
    return video_frame_to_latent(seconds_to_video_frame(t, fps), temporal_compression)


def duration_to_latent_frames(duration_s: float, fps: float, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Latent frames of ``duration_s`` seconds of content: ``round_half_up(duration_s·fps/8)``."""
    return round_half_up(duration_s * fps / temporal_compression)


def latent_span(
    start_s: float,
    end_s: float,
    fps: float,
    cover: bool = False,
    temporal_compression: int = TEMPORAL_COMPRESSION,
) -> tuple[int, int]:
    """Latent frames ``[start, stop)`` of the time span ``[start_s, end_s)``.

    Args:
        start_s: Span start in seconds.
        end_s: Span end in seconds (exclusive).
        fps: Video frame rate.
        cover: False snaps both boundaries to latent starts (remove, retime); True returns every latent
            frame holding one of the span's video frames (re-render).
        temporal_compression: Video frames per latent frame after frame 0.

    Returns:
        ``(start, stop)``; empty (``start == stop``) when the span is below the 8-frame resolution.
    """
    f0 = seconds_to_video_frame(start_s, fps)
    f1 = seconds_to_video_frame(end_s, fps)
    start = video_frame_to_latent(f0, temporal_compression)
    if cover:
        stop = video_frame_to_latent(f1 - 1, temporal_compression) + 1 if f1 > f0 else start
    else:
        stop = video_frame_to_latent(f1, temporal_compression)
    return start, max(start, stop)


def latent_to_video_frames(num_latent_frames: int, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Video frames decoded from ``T'`` latent frames: ``8(T'−1)+1``."""
    if num_latent_frames < 1:
        raise ValueError(f"{num_latent_frames} latent frames decode to no video")
    return temporal_compression * (num_latent_frames - 1) + 1


def latent_frame_spans_s(
    num_latent_frames: int, fps: float, temporal_compression: int = TEMPORAL_COMPRESSION
) -> torch.Tensor:
    """Seconds ``[start, end)`` of the video frames each latent frame decodes to.

    Returns:
        ``[T', 2]`` float64: latent 0 covers ``[0, 1/fps)``, latent ``n`` covers ``[(8n−7)/fps, (8n+1)/fps)``.
    """
    groups = latent_frame_groups(latent_to_video_frames(num_latent_frames, temporal_compression), temporal_compression)
    return torch.tensor([[g.start / fps, g.stop / fps] for g in groups], dtype=torch.float64)


def audio_duration_s(num_latent_frames: int, fps: float, temporal_compression: int = TEMPORAL_COMPRESSION) -> float:
    """Seconds of audio the edited clip needs: its ``8(T'−1)+1`` video frames at ``fps``.

    The edited (voice-cloned) audio must cover ``[0, audio_duration_s)``; per-frame windows
    (:func:`trainer.model.audio_windows.sample_audio_windows`) mask whatever reaches beyond it.
    """
    return latent_to_video_frames(num_latent_frames, temporal_compression) / fps


def audio_samples(
    num_latent_frames: int, fps: float, sample_rate: int, temporal_compression: int = TEMPORAL_COMPRESSION
) -> int:
    """Audio samples at ``sample_rate`` covering the edited clip: ``⌈F'·sample_rate/fps⌉``."""
    exact = latent_to_video_frames(num_latent_frames, temporal_compression) * sample_rate / fps
    # The epsilon keeps an exact product (e.g. 201·16000/25) from rounding up on float error.
    return math.ceil(exact - 1e-6)


def spread_positions(count: int, length: int) -> list[int]:
    """``count`` positions in ``[0, length)`` spread as evenly as possible (Bresenham / centred spacing).

    Position ``j`` is ``⌊(j + ½)·length/count⌋``: consecutive gaps differ by at most one and the first and
    last positions sit half a gap from the ends, so no edit piles up at a span boundary.

    Args:
        count: Positions wanted, ``0 ≤ count ≤ length``.
        length: Slots to choose from.

    Returns:
        ``count`` strictly increasing ints.
    """
    if not 0 <= count <= length:
        raise ValueError(f"cannot spread {count} positions over {length} slots")
    return [(2 * j + 1) * length // (2 * count) for j in range(count)]
