"""Which source frame every output frame shows: the output follows the speech, at the source's frame rate.

Output frame ``j`` is at ``j / fps``; the source frame nearest to a tick is the project's one frame-rate rule
(:func:`data_prep.frame_rate.nearest_frames`, on real timestamps, so variable-frame-rate sources are cut by
time). The source offers ``m`` ticks (those within :func:`data_prep.frame_rate.span_end`); the speech needs
``round(audio_s · fps)``. ``loop=pingpong`` plays ticks ``0, 1, …, m−1, m−2, …, 1, 0, 1, …`` until the speech
ends (a longer video is simply cut); ``loop=none`` stops at the shorter of the two. The model samples
``8k + 1`` frames (the VAE's causal grid), so the order continues past the last output frame by at most 7
frames, which are generated and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.frame_rate import nearest_frames, span_end


@dataclass(frozen=True)
class Timeline:
    """Frames of the dub.

    Attributes:
        order: Source frame of every model frame ``[F]``, ``F = 8k + 1 ≥ num_output``.
        num_output: Frames written to the output.
        audio_s: Seconds of speech the output carries (the speech, cut to the video under ``loop=none``).
        looped: Whether the video was played more than once (ping-pong).
    """

    order: np.ndarray
    num_output: int
    audio_s: float
    looped: bool

    @property
    def num_model_frames(self) -> int:
        """``F``."""
        return int(self.order.shape[0])


def pingpong(positions: np.ndarray, length: int) -> np.ndarray:
    """Ping-pong positions over ``length`` ticks: ``0 … length−1`` then back down to 1, repeated."""
    if length <= 1:
        return np.zeros_like(positions)
    period = 2 * (length - 1)
    q = positions % period
    return np.where(q < length, q, period - q)


def plan_timeline(times: np.ndarray, fps: float, audio_s: float, loop: str, temporal: int = 8) -> Timeline:
    """The output's frames.

    Args:
        times: Presentation times of the decoded source frames, seconds from the first ``[N]``.
        fps: Output frame rate (the source's).
        audio_s: Length of the speech in seconds.
        loop: ``pingpong`` or ``none``.
        temporal: The VAE's temporal compression (model frame counts are ``temporal·k + 1``).

    Returns:
        The timeline.
    """
    ticks = int(np.floor(span_end(times) * fps + 1e-9)) + 1  # ticks k/fps within the source's span
    wanted = max(1, int(round(audio_s * fps)))
    num_output = wanted if loop == "pingpong" else min(wanted, ticks)
    frames = temporal * int(np.ceil((num_output - 1) / temporal)) + 1
    positions = np.arange(frames)
    positions = pingpong(positions, ticks) if loop == "pingpong" else np.minimum(positions, ticks - 1)
    source = nearest_frames(times, np.arange(ticks) / float(fps))
    spoken = audio_s if num_output == wanted else num_output / float(fps)
    return Timeline(source[positions], num_output, float(spoken), bool(num_output > ticks))
