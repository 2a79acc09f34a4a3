"""The one frame-rate conversion rule: each output tick shows the source frame nearest to it in time.

data_prep (clips resampled to ``clips.fps``, :func:`data_prep.segments.tile_clips`), eval (the 25 fps view
SyncNet scores, :func:`eval.metrics.sync.resample_frames`) and sampling (which scores its outputs with the
same metrics) all call :func:`nearest_frames`, so a clip and a generated video of the same span are cut
the same way.

**Rule.** Output frame ``j`` is at ``t0 + j / fps_out``; it takes the source frame whose presentation time
is nearest to that tick, the earlier one on a tie. The time error is at most half a source frame (±16.7 ms
at 30 fps) and is zero on average, so audio cut at the same ticks stays aligned with the pictures. It works
on real timestamps, so variable-frame-rate sources are converted by time, not by frame count. A tick
belongs to the source while it is at most half a frame past the last frame (:func:`span_end`), so the
output never repeats the last frame to fill time the source does not have.

**Why not floor** (the frame on screen at the tick, what eval used before): its pictures always trail their
ticks (13 ms on average at 30 fps, up to 27 ms) for no benefit; on a 30 fps source it picks other frames
than this rule for 40% of the ticks. **Why not ``ffmpeg -r 25``** (what the official
SyncNet pipeline runs): ffmpeg 5.1's constant-rate output drops or repeats a frame only once the drift
passes about a frame, so on a 30 fps source it keeps frames ``0…9, 11, 12…`` where this rule picks
``0, 1, 2, 4, 5…``; the two agree on 3% of the ticks and ffmpeg's pictures trail them by 45 ms on average
(60 ms at most), and from a 24 fps source it keeps all 96 frames of 4 s and relabels them, running up to
158 ms ahead. This rule's error is 0 on average and at most half a source frame (numbers from
``benchmarks/preprocessing_fidelity.py``). The ``official`` sync protocol (:mod:`eval.metrics.sync_official`)
therefore runs ffmpeg itself rather than this rule.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SYNCNET_FPS", "nearest_frames", "rate_view", "resample_indices", "resampled_length", "span_end"]

# The rate SyncNet reads (40 ms frames): clips at other rates are scored on their view at this rate.
SYNCNET_FPS = 25.0


def nearest_frames(times: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """The rule: for each tick, the index of the source frame nearest in time (ties: the earlier frame).

    Args:
        times: ``[N]`` source presentation times in seconds, increasing.
        ticks: ``[M]`` output frame times in seconds, on the same clock.

    Returns:
        int64 ``[M]`` indices into ``times``.
    """
    times = np.asarray(times, dtype=np.float64)
    ticks = np.asarray(ticks, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times must be a non-empty 1-D array of seconds, got shape {list(times.shape)}")
    if times.size == 1:
        return np.zeros(ticks.shape, np.int64)
    pos = np.clip(np.searchsorted(times, ticks), 1, times.size - 1)
    before, after = np.abs(ticks - times[pos - 1]), np.abs(times[pos] - ticks)
    # A nanosecond of slack keeps exact ties (e.g. 50 → 25 fps) on the earlier frame despite float rounding.
    return np.where(before <= after + 1e-9, pos - 1, pos).astype(np.int64)


def span_end(times: np.ndarray) -> float:
    """The last instant a source still covers: its last frame plus half a (median) frame duration.

    Ticks up to here take a frame within half a frame of them; later ticks are past the source.
    """
    times = np.asarray(times, dtype=np.float64)
    half = 0.5 * float(np.median(np.diff(times))) if times.size > 1 else 0.02
    return float(times[-1]) + half


def resampled_length(num_frames: int, fps: float, target_fps: float) -> int:
    """Frames a constant-rate video of ``num_frames`` at ``fps`` has at ``target_fps`` (ticks up to :func:`span_end`).

    ``floor((num_frames − ½) · target_fps / fps) + 1`` (``num_frames`` when the rates are equal).
    """
    if fps <= 0 or target_fps <= 0:
        raise ValueError(f"frame rates must be > 0, got fps={fps}, target_fps={target_fps}")
    if num_frames < 1:
        return 0
    return int(np.floor((num_frames - 0.5) * target_fps / fps + 1e-9)) + 1


def resample_indices(num_frames: int, fps: float, target_fps: float) -> np.ndarray:
    """Source frame of every output frame when a constant-rate video changes rate (:func:`nearest_frames`).

    Args:
        num_frames: Source frames (frame ``i`` at ``i / fps``).
        fps: Source rate.
        target_fps: Output rate (frame ``j`` at ``j / target_fps``).

    Returns:
        int64 ``[resampled_length(num_frames, fps, target_fps)]``.
    """
    count = resampled_length(num_frames, fps, target_fps)
    return nearest_frames(np.arange(num_frames) / float(fps), np.arange(count) / float(target_fps))


def rate_view(times: np.ndarray, target_fps: float) -> np.ndarray:
    """Which frames of a clip make its view at ``target_fps`` (the 25 fps view SyncNet scores of a 30 fps clip).

    Ticks run from the clip's first frame every ``1 / target_fps`` s up to :func:`span_end`; each takes the
    nearest frame (:func:`nearest_frames`), so the view covers the clip's span on its real timestamps.

    Args:
        times: ``[N]`` presentation times of the clip's frames in seconds, increasing.
        target_fps: Rate of the view.

    Returns:
        int64 positions into ``times``, one per tick (``arange(N)`` when the clip already runs at that rate).
    """
    times = np.asarray(times, dtype=np.float64)
    if target_fps <= 0:
        raise ValueError(f"target_fps must be > 0, got {target_fps}")
    count = int(np.floor((span_end(times) - times[0]) * target_fps + 1e-9)) + 1
    ticks = times[0] + np.arange(count) / float(target_fps)
    return nearest_frames(times, ticks)
