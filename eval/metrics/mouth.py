"""Mouth closure during silence: the share of silent frames in which the mouth stays closed.

Silence per video frame: the RMS of the audio samples that fall in the frame's time span
``[i / fps, (i + 1) / fps)`` (waveform in [-1, 1]; int16 is scaled by 1/32768), compared in dBFS
(``20 · log10(RMS)``) against ``silence_dbfs`` (default -45 dBFS: speech sits around -10 to -30 dBFS,
pauses between words rarely drop below -40, room tone and digital silence are below -45).

Mouth opening per frame: the distance between the inner-lip midpoints (mesh landmarks 13, upper, and 14,
lower) divided by the face height (landmark 10, top of the forehead, to 152, chin), which makes it
independent of the resolution and the face size. A frame counts as closed when the opening is below
``closed_below`` (default 0.02; open speech frames measure about 0.03-0.10).

The score is ``#(silent and closed) / #(silent)`` over frames with a face; ``None`` when the clip has no
silent frame with a face.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CHIN",
    "FOREHEAD",
    "LOWER_INNER_LIP",
    "UPPER_INNER_LIP",
    "frame_rms_dbfs",
    "mouth_closure_in_silence",
    "mouth_opening",
]

UPPER_INNER_LIP = 13
LOWER_INNER_LIP = 14
FOREHEAD = 10
CHIN = 152
DEFAULT_SILENCE_DBFS = -45.0
DEFAULT_CLOSED_BELOW = 0.02


def frame_rms_dbfs(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS level of the audio under each video frame, in dBFS.

    Args:
        audio: ``[S]`` mono waveform, float in [-1, 1] or int16.
        sample_rate: Audio sample rate in Hz.
        fps: Video frame rate.
        num_frames: Number of video frames.

    Returns:
        float64 ``[num_frames]``; ``-inf`` for digital silence, NaN for frames past the end of the audio.
    """
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {list(a.shape)}")
    if sample_rate <= 0 or fps <= 0 or num_frames < 0:
        raise ValueError(f"need sample_rate > 0, fps > 0, num_frames >= 0; got {sample_rate}, {fps}, {num_frames}")
    x = a.astype(np.float64) / 32768.0 if a.dtype == np.int16 else a.astype(np.float64)
    edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    out = np.full(num_frames, np.nan)
    for i in range(num_frames):
        seg = x[edges[i] : min(edges[i + 1], x.shape[0])]
        if seg.size:
            with np.errstate(divide="ignore"):
                out[i] = 20.0 * np.log10(np.sqrt(np.mean(seg**2)))
    return out


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap over face height per frame.

    Args:
        landmarks: ``[T, 468, 2]`` mesh landmarks in pixels (NaN rows: no face).

    Returns:
        float64 ``[T]``; NaN for frames without a face.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[2] != 2 or lm.shape[1] <= CHIN:
        raise ValueError(f"landmarks must be [T, 468, 2], got {list(lm.shape)}")
    gap = np.linalg.norm(lm[:, UPPER_INNER_LIP] - lm[:, LOWER_INNER_LIP], axis=1)
    height = np.linalg.norm(lm[:, FOREHEAD] - lm[:, CHIN], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(height > 0, gap / height, np.nan)


def mouth_closure_in_silence(
    landmarks: np.ndarray,
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    silence_dbfs: float = DEFAULT_SILENCE_DBFS,
    closed_below: float = DEFAULT_CLOSED_BELOW,
) -> float | None:
    """Share of silent frames (with a face) whose mouth opening is below ``closed_below``.

    Args:
        landmarks: ``[T, 468, 2]`` mesh landmarks of the video.
        audio: ``[S]`` mono waveform of the same span.
        sample_rate: Audio sample rate.
        fps: Video frame rate.
        silence_dbfs: Frames whose audio RMS is below this level are silent.
        closed_below: Mouth openings below this are closed.

    Returns:
        The share in [0, 1], or ``None`` when no frame is both silent and has a face.
    """
    opening = mouth_opening(landmarks)
    level = frame_rms_dbfs(audio, sample_rate, fps, opening.shape[0])
    silent = (level < silence_dbfs) & np.isfinite(opening)  # NaN level (no audio) is not silent
    if not silent.any():
        return None
    return float((opening[silent] < closed_below).mean())
