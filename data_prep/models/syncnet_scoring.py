"""SyncNet scores of a clip: audio–visual sync offset, confidence (Sync-C) and distance (Sync-D).

This reproduces ``SyncNetInstance.py`` (``evaluate``, ``calc_pdist``) of the official ``joonson/syncnet_python``
code (:func:`score_clip`). Frames are read with ``cv2.imread``, i.e. **BGR** uint8 values fed as floats in
[0, 255] without normalisation; audio is 16 kHz int16 PCM turned into 13 MFCCs at 100 Hz by
``python_speech_features.mfcc`` with its defaults (:mod:`data_prep.models.mfcc`); visual windows of 5 frames
are paired with 20 MFCC frames (0.2 s) starting at MFCC index ``4·frame``; the number of windows is
``min(frames, samples // 640) − 5``; embeddings are compared over ±``vshift`` frames (``run_syncnet.py``
default 15) with the audio embeddings zero-padded at both ends, and averaged over windows per offset.
``offset = vshift − argmin``, ``confidence = median − min`` (Sync-C), ``min_dist = min`` (Sync-D).

The network is :class:`data_prep.models.syncnet.SyncNet`; its input crops come from
:mod:`data_prep.models.syncnet_crops`.

SyncNet assumes 25 fps video (one frame = 4 MFCC frames = 40 ms). Callers resample to 25 fps (data_prep
resamples clips to 25 fps); :func:`score_clip` refuses other rates.

Offset sign (from the official formula): video window ``i`` is best matched by audio window ``i − offset``.
A positive offset means the audio is ahead of the video (the sound comes early); delaying the audio by
``offset_ms`` re-synchronises the clip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_prep.frame_rate import SYNCNET_FPS
from data_prep.models.mfcc import mfcc
from data_prep.models.syncnet import SyncNet
from data_prep.models.syncnet_crops import CROP_SIZE

__all__ = [
    "SYNCNET_SAMPLE_RATE",
    "SyncScores",
    "audio_mfcc",
    "embed_clip",
    "offset_distances",
    "score_clip",
    "scores_from_embeddings",
]

logger = logging.getLogger(__name__)

SYNCNET_SAMPLE_RATE = 16000
WINDOW_FRAMES = 5  # visual window (0.2 s at 25 fps)
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps
MFCC_WINDOW = 20  # audio window: 20 MFCC frames = 0.2 s
SAMPLES_PER_FRAME = SYNCNET_SAMPLE_RATE // int(SYNCNET_FPS)  # 640


def audio_mfcc(audio_16k: np.ndarray) -> np.ndarray:
    """SyncNet's MFCC input: ``python_speech_features.mfcc`` defaults on int16-scaled 16 kHz audio.

    The official code reads ffmpeg's ``pcm_s16le`` output with ``scipy.io.wavfile``, so the MFCCs are computed
    on int16 sample values; the scale changes coefficient 0 (log energy). Float audio in [-1, 1] is therefore
    converted the way ffmpeg converts float to s16 (×32768, rounded, clipped); int16 audio is used as is.

    Args:
        audio_16k: ``[S]`` mono audio at 16 kHz, float in [-1, 1] or int16.

    Returns:
        float32 ``[13, T]`` (cepstra × time), ``T = 1 + ceil((S − 400) / 160)`` frames at 100 Hz.
    """
    audio = np.asarray(audio_16k)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {list(audio.shape)}")
    if audio.dtype != np.int16:
        audio = np.clip(np.rint(audio.astype(np.float64) * 32768.0), -32768, 32767)
    # Computed in float64 like the official code, which casts to float32 only when building the tensor.
    return mfcc(audio, SYNCNET_SAMPLE_RATE).T.astype(np.float32)


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def embed_clip(
    model: SyncNet,
    frames_224: np.ndarray,
    mfcc_13: np.ndarray,
    num_windows: int,
    batch_size: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings of the first ``num_windows`` windows, ``batch_size`` windows per forward.

    Window ``i`` is frames ``i … i+4`` (RGB input flipped to the BGR the official ``cv2.imread`` gives, values
    in [0, 255]) and MFCC frames ``4i … 4i+19``. The model must already be in eval mode: BatchNorm with
    running statistics makes every window's embedding independent of its batch, so any ``batch_size`` gives
    the same result (up to float rounding).

    Args:
        model: A :class:`SyncNet` in eval mode.
        frames_224: ``[F, 224, 224, 3]`` uint8 RGB face crops at 25 fps.
        mfcc_13: ``[13, T]`` MFCCs from :func:`audio_mfcc`.
        num_windows: Number of windows; needs ``F ≥ num_windows + 4`` and ``T ≥ 4·num_windows + 16``.
        batch_size: Windows per forward pass.

    Returns:
        ``(lip [N, D], audio [N, D])`` float32 on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if frames_224.shape[0] < num_windows + WINDOW_FRAMES - 1:
        raise ValueError(f"{num_windows} windows need {num_windows + WINDOW_FRAMES - 1} frames")
    if mfcc_13.shape[1] < MFCC_PER_FRAME * (num_windows - 1) + MFCC_WINDOW:
        raise ValueError(f"{num_windows} windows need {MFCC_PER_FRAME * (num_windows - 1) + MFCC_WINDOW} MFCCs")
    device = _model_device(model)
    cc = torch.from_numpy(np.ascontiguousarray(mfcc_13, dtype=np.float32))
    lip_out, aud_out = [], []
    with torch.inference_mode():
        for start in range(0, num_windows, batch_size):
            stop = min(start + batch_size, num_windows)
            # Frames start … stop+3 cover all windows of this batch; RGB → BGR, [T, H, W, C] → [C, T, H, W].
            chunk = frames_224[start : stop + WINDOW_FRAMES - 1, :, :, ::-1]
            video = torch.from_numpy(np.ascontiguousarray(chunk)).permute(3, 0, 1, 2).float()
            lip_in = torch.stack([video[:, j : j + WINDOW_FRAMES] for j in range(stop - start)])
            aud_in = torch.stack(
                [cc[None, :, MFCC_PER_FRAME * v : MFCC_PER_FRAME * v + MFCC_WINDOW] for v in range(start, stop)]
            )
            lip_out.append(model.forward_lip(lip_in.to(device)).float().cpu())
            aud_out.append(model.forward_aud(aud_in.to(device)).float().cpu())
    return torch.cat(lip_out), torch.cat(aud_out)


def offset_distances(lip: torch.Tensor, audio: torch.Tensor, vshift: int = 15) -> torch.Tensor:
    """Distances between each lip window and the audio windows ``−vshift … +vshift`` away (``calc_pdist``).

    As in the official code, the audio embeddings are zero-padded by ``vshift`` rows at both ends, so shifts
    past the clip's ends compare against a zero vector, and the distance is ``pairwise_distance`` (L2 with its
    ``eps = 1e-6``).

    Args:
        lip: ``[N, D]`` lip embeddings.
        audio: ``[N, D]`` audio embeddings.
        vshift: Largest shift in frames.

    Returns:
        ``[N, 2·vshift + 1]``: column ``k`` pairs lip window ``i`` with audio window ``i + k − vshift``.
    """
    n = lip.shape[0]
    padded = F.pad(audio, (0, 0, vshift, vshift))
    return torch.stack([F.pairwise_distance(lip, padded[k : k + n]) for k in range(2 * vshift + 1)], dim=1)


@dataclass(frozen=True)
class SyncScores:
    """SyncNet scores of one clip.

    Attributes:
        offset_frames: AV offset in video frames; positive: the audio is ahead of the video.
        offset_ms: The offset in milliseconds at the clip's fps (×40 at 25 fps).
        confidence: ``median − min`` of the per-offset mean distances (Sync-C; higher is better).
        min_dist: The smallest per-offset mean distance (Sync-D; lower is better).
        mean_dists: ``[2·vshift + 1]`` mean distance per shift, shift ``k − vshift`` at index ``k``.
        num_windows: Number of 5-frame windows averaged.
    """

    offset_frames: int
    offset_ms: float
    confidence: float
    min_dist: float
    mean_dists: np.ndarray
    num_windows: int


def scores_from_embeddings(lip: torch.Tensor, audio: torch.Tensor, vshift: int = 15, fps: float = 25.0) -> SyncScores:
    """Offset, confidence and distance from per-window embeddings, as the official ``evaluate``.

    Args:
        lip: ``[N, D]`` lip embeddings.
        audio: ``[N, D]`` audio embeddings.
        vshift: Largest shift searched, in frames.
        fps: Video frame rate (for ``offset_ms``).

    Returns:
        The clip's :class:`SyncScores`.
    """
    mean_dists = offset_distances(lip, audio, vshift).mean(dim=0)
    min_dist, min_idx = torch.min(mean_dists, dim=0)
    # torch.median returns the lower middle value for even lengths; with 2·vshift + 1 shifts it is exact.
    confidence = torch.median(mean_dists) - min_dist
    offset = vshift - int(min_idx)
    return SyncScores(
        offset_frames=offset,
        offset_ms=offset * 1000.0 / fps,
        confidence=float(confidence),
        min_dist=float(min_dist),
        mean_dists=mean_dists.numpy(),
        num_windows=lip.shape[0],
    )


def score_clip(
    model: SyncNet,
    frames_224: np.ndarray,
    audio_16k: np.ndarray,
    fps: float = 25.0,
    batch_size: int = 20,
    vshift: int = 15,
) -> SyncScores:
    """Score one clip like the official ``SyncNetInstance.evaluate``.

    Args:
        model: A :class:`SyncNet` (from :func:`~data_prep.models.syncnet.load_syncnet`); it is put in eval
            mode for the call and its previous mode restored.
        frames_224: ``[F, 224, 224, 3]`` uint8 RGB face crops
            (:func:`~data_prep.models.syncnet_crops.crop_faces`), 25 fps.
        audio_16k: ``[S]`` mono 16 kHz audio of the same span, float in [-1, 1] or int16.
        fps: Frame rate of ``frames_224``; must be 25 (callers resample; SyncNet's windows assume 40 ms frames).
        batch_size: Windows per forward pass (does not change the result).
        vshift: Largest AV shift searched, in frames (official default 15, ±0.6 s).

    Returns:
        The clip's :class:`SyncScores`.

    Raises:
        ValueError: ``fps`` is not 25, inputs have the wrong shape or type, or the clip is shorter than 6
            frames (0.24 s) of both video and audio.
    """
    if abs(fps - SYNCNET_FPS) > 1e-3:
        raise ValueError(f"SyncNet needs 25 fps video (got {fps}); resample the clip to 25 fps first")
    frames_224 = np.asarray(frames_224)
    if frames_224.ndim != 4 or frames_224.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or frames_224.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, 224, 224, 3], got {frames_224.dtype} {list(frames_224.shape)}")
    audio = np.asarray(audio_16k)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {list(audio.shape)}")
    if vshift < 0:
        raise ValueError(f"vshift must be >= 0, got {vshift}")
    num_frames = frames_224.shape[0]
    # The official count: both streams cut to the shorter, and one window fewer than would fit (it stops at
    # min_length − 5, not − 4).
    min_length = min(num_frames, audio.shape[0] // SAMPLES_PER_FRAME)
    num_windows = min_length - WINDOW_FRAMES
    if num_windows < 1:
        raise ValueError(
            f"clip too short for SyncNet: {num_frames} frames and {audio.shape[0]} samples give {min_length} frames"
        )
    if audio.shape[0] != num_frames * SAMPLES_PER_FRAME:
        logger.debug("audio (%d samples) and video (%d frames) lengths differ", audio.shape[0], num_frames)

    was_training = model.training
    model.eval()
    try:
        lip, aud = embed_clip(model, frames_224, audio_mfcc(audio), num_windows, batch_size)
    finally:
        model.train(was_training)
    return scores_from_embeddings(lip, aud, vshift=vshift, fps=fps)
