"""The driving audio of an edited clip, assembled from the source audio along the edit's frame mapping.

Every output video frame of an :class:`eval.sampler.editing.EditedSequence` comes from a source video
frame (kept latent frames, frame by frame within their 8-frame group) or from nowhere (inserted frames).
The edited waveform and feature track take each kept frame's own span of the source and silence (zero
samples, zero feature rows: the audio null of training) for inserted frames. Transcript-driven edits with
new speech replace that silence with synthesised audio and its features.
"""

from __future__ import annotations

import numpy as np
import torch

from trainer.model.masks import latent_frame_groups


def source_video_frames(source_index: torch.Tensor, temporal_compression: int = 8) -> list[int | None]:
    """Source video frame of every output video frame (``None`` for inserted frames).

    Args:
        source_index: Source latent frame per output latent frame ``[T']`` (−1: inserted).
        temporal_compression: Video frames per latent frame after frame 0.

    Returns:
        ``8(T'−1)+1`` entries.
    """
    src = [int(s) for s in source_index]
    out_groups = latent_frame_groups(temporal_compression * (len(src) - 1) + 1, temporal_compression)
    # Source latent frame 0 holds one video frame, the others eight: a kept frame 0 moved elsewhere (or
    # another frame moved to position 0) maps position by position, clamped to the group it came from.
    longest = max(src) + 1 if max(src) >= 0 else 1
    src_groups = latent_frame_groups(temporal_compression * (longest - 1) + 1, temporal_compression)
    frames: list[int | None] = []
    for j, group in enumerate(out_groups):
        for p in range(len(group)):
            if src[j] < 0:
                frames.append(None)
            else:
                g = src_groups[src[j]]
                frames.append(g[min(p, len(g) - 1)])
    return frames


def _spans(frames: list[int | None], rate: float, fps: float) -> list[tuple[int, int] | None]:
    return [None if f is None else (int(np.floor(f * rate / fps)), int(np.floor((f + 1) * rate / fps))) for f in frames]


def edited_track(track: np.ndarray, frames: list[int | None], rate: float, fps: float) -> np.ndarray:
    """Re-assemble a time series (waveform ``[S]`` or features ``[L, ...]``) along output frames.

    Args:
        track: The source series, row 0 at source frame 0.
        frames: :func:`source_video_frames` output.
        rate: Rows per second of ``track`` (the sample rate, or the feature rate).
        fps: Video frame rate.

    Returns:
        The edited series: each output frame's ``[floor(f·rate/fps), floor((f+1)·rate/fps))`` rows of its
        source frame, zeros for inserted frames (the same row count as a kept frame there would have).
    """
    parts = []
    for out_f, span in enumerate(_spans(frames, rate, fps)):
        lo, hi = int(np.floor(out_f * rate / fps)), int(np.floor((out_f + 1) * rate / fps))
        n = hi - lo
        piece = np.zeros((n, *track.shape[1:]), dtype=track.dtype)
        if span is not None:
            src = track[span[0] : span[0] + n]
            piece[: len(src)] = src
        parts.append(piece)
    return np.concatenate(parts, axis=0) if parts else track[:0]
