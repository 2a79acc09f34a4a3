"""SyncNet (Chung & Zisserman 2016, "Out of time"): audio–visual sync offset, confidence (Sync-C), distance (Sync-D).

This reproduces the official ``joonson/syncnet_python`` code, which is the reference every lip-sync paper's
Sync-C / Sync-D numbers come from:

- ``SyncNetModel.py`` (class ``S``): the architecture, with the same ``netcnnaud`` / ``netfcaud`` /
  ``netcnnlip`` / ``netfclip`` Sequentials layer by layer, so the official ``syncnet_v2.model`` loads key for
  key (:class:`SyncNet`, :func:`load_syncnet`).
- ``SyncNetInstance.py`` (``evaluate``, ``calc_pdist``): the scoring (:func:`score_clip`). Frames are read
  with ``cv2.imread``, i.e. **BGR** uint8 values fed as floats in [0, 255] without normalisation; audio is
  16 kHz int16 PCM turned into 13 MFCCs at 100 Hz by ``python_speech_features.mfcc`` with its defaults
  (:mod:`data_prep.models.mfcc`); visual windows of 5 frames are paired with 20 MFCC frames (0.2 s) starting
  at MFCC index ``4·frame``; the number of windows is ``min(frames, samples // 640) − 5``; embeddings are
  compared over ±``vshift`` frames (``run_syncnet.py`` default 15) with the audio embeddings zero-padded at
  both ends, and averaged over windows per offset. ``offset = vshift − argmin``, ``confidence = median − min``
  (Sync-C), ``min_dist = min`` (Sync-D).
- ``run_pipeline.py`` (``crop_video``): the face crops the network expects. Detections are turned into a
  centre and half-size ``s = max(w, h)/2``, each median-filtered over frames with kernel 13
  (:func:`smooth_boxes`); the frame is padded with grey (110) and a square of side ``2·s·(1 + crop_scale)``
  is cut, centred horizontally on the face and from ``s`` above the face centre downwards (so the mouth is
  inside), then resized to 224×224 with bilinear interpolation (:func:`crop_faces`). The official pipeline
  also re-encodes video at 25 fps first.

SyncNet assumes 25 fps video (one frame = 4 MFCC frames = 40 ms). Callers resample to 25 fps (data_prep
resamples clips to 25 fps); :func:`score_clip` refuses other rates.

Offset sign (from the official formula): video window ``i`` is best matched by audio window ``i − offset``.
A positive offset means the audio is ahead of the video (the sound comes early); delaying the audio by
``offset_ms`` re-synchronises the clip.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import medfilt
from torch import nn

from data_prep.frame_rate import SYNCNET_FPS
from data_prep.models.mfcc import mfcc
from trainer.model.weights import load_strict, read_state_dict

__all__ = [
    "CROP_SIZE",
    "SYNCNET_FPS",
    "SYNCNET_SAMPLE_RATE",
    "SYNCNET_URL",
    "SyncNet",
    "SyncScores",
    "audio_mfcc",
    "crop_faces",
    "embed_clip",
    "load_syncnet",
    "offset_distances",
    "score_clip",
    "scores_from_embeddings",
    "smooth_boxes",
]

logger = logging.getLogger(__name__)

SYNCNET_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"
SYNCNET_SAMPLE_RATE = 16000
CROP_SIZE = 224
WINDOW_FRAMES = 5  # visual window (0.2 s at 25 fps)
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps
MFCC_WINDOW = 20  # audio window: 20 MFCC frames = 0.2 s
SAMPLES_PER_FRAME = SYNCNET_SAMPLE_RATE // int(SYNCNET_FPS)  # 640
CROP_PAD_VALUE = 110  # grey the official crop pads the frame with
BOX_MEDIAN_KERNEL = 13  # official median filter over per-frame detections


class SyncNet(nn.Module):
    """The official SyncNet v2 (``SyncNetModel.S``): two towers embedding lips and MFCCs into one space.

    Attribute names, registration order and the layer order inside each Sequential follow the official
    class, so ``state_dict()`` keys (e.g. ``netcnnaud.0.weight``, ``netcnnlip.19.running_var``) and shapes are
    those of ``syncnet_v2.model``. Pooling and ReLU layers have no parameters but keep their slots, because
    they fix the indices of the layers after them.

    Args:
        embed_dim: Output size of both towers (``num_layers_in_fc_layers`` in the official code).
    """

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        # Audio tower on the [13 cepstra × 20 frames] MFCC image → [512, 1, 1].
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(192),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, embed_dim),
        )
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, embed_dim),
        )
        # Lip tower on 5 frames × 224² → [512, 1, 1, 1]; the first 3-D conv consumes the whole time axis.
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, mfcc_windows: torch.Tensor) -> torch.Tensor:
        """Audio embeddings.

        Args:
            mfcc_windows: ``[B, 1, 13, 20]`` MFCC windows (cepstra × time).

        Returns:
            ``[B, embed_dim]``.
        """
        return self.netfcaud(self.netcnnaud(mfcc_windows).flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """Lip embeddings.

        Args:
            frames: ``[B, 3, 5, 224, 224]`` float BGR face crops in [0, 255] (channels, time, height, width).

        Returns:
            ``[B, embed_dim]``.
        """
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def _missing_file_error(path: str | os.PathLike) -> FileNotFoundError:
    return FileNotFoundError(
        f"SyncNet weights not found: {os.fspath(path)!r}. This is the official syncnet_v2.model from "
        f"joonson/syncnet_python (download_model.sh): {SYNCNET_URL}"
    )


def load_syncnet(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncNet:
    """Load the official ``syncnet_v2.model`` into :class:`SyncNet`, key for key.

    The official file is a ``torch.save``-d state dict of ``SyncNetModel.S`` (the official
    ``loadParameters`` iterates its items and copies them by name), so it is read with
    ``weights_only=True``: no pickled code runs. Keys and shapes must equal the architecture's, with one
    tolerance: BatchNorm ``num_batches_tracked`` counters may be absent, because files written by PyTorch
    before 0.4.1 have none. They only matter in training mode with ``momentum=None``, never for scoring, and
    are filled with the model's zeros so that the final ``load_state_dict`` is strict.

    Args:
        path: The checkpoint file.
        device: Where the model is placed.

    Returns:
        The model in eval mode (BatchNorm uses the stored statistics).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names the official download URL).
        ValueError: The file is not a state dict of tensors, or its keys or shapes differ from the official
            layout (the message names the first differing keys).
    """
    if not os.path.isfile(path):
        raise _missing_file_error(path)
    layout = "the official SyncNet (syncnet_v2.model) layout"
    model = SyncNet()
    load_strict(model, read_state_dict(path, layout), path, layout, may_lack=(".num_batches_tracked",))
    return model.to(device).eval()


def smooth_boxes(boxes: np.ndarray, kernel_size: int = BOX_MEDIAN_KERNEL) -> np.ndarray:
    """Median-filter per-frame face boxes the way the official pipeline does before cropping.

    The official ``crop_video`` turns each box into a centre ``(x, y)`` and half-size ``s = max(w, h)/2`` and
    applies ``scipy.signal.medfilt(·, 13)`` to each over the frames of a track (zero-padded at the ends, as
    ``medfilt`` is). The result is returned as square xyxy boxes ``[x − s, y − s, x + s, y + s]``, which
    :func:`crop_faces` maps back to the same centre and size.

    Args:
        boxes: ``[F, 4]`` xyxy pixel boxes of one face track.
        kernel_size: Odd median kernel length in frames.

    Returns:
        float64 ``[F, 4]`` smoothed square xyxy boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [F, 4] xyxy, got {list(boxes.shape)}")
    s = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel_size)
    x = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel_size)
    y = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel_size)
    return np.stack([x - s, y - s, x + s, y + s], axis=1)


def crop_faces(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    """Cut SyncNet's 224×224 face crops, reproducing the official ``crop_video`` geometry.

    Per frame, with ``s = max(w, h)/2`` and ``(x, y)`` the box centre: the frame is padded by
    ``p = int(s·(1 + 2·crop_scale))`` grey (110) pixels on every side, the padded rows
    ``int(y + p − s) : int(y + p + s·(1 + 2·crop_scale))`` and columns
    ``int(x + p − s·(1 + crop_scale)) : int(x + p + s·(1 + crop_scale))`` are taken, and the patch is resized
    to 224×224 with ``cv2.resize`` (bilinear). The face is centred horizontally; vertically the crop starts
    ``s`` above the face centre, so the centre lands at row ``224 / (2·(1 + crop_scale))`` (80 for 0.4) and
    the extra height goes below the face, where the mouth is. The padding is only materialised where the
    crop leaves the frame. Smoothing boxes over time (:func:`smooth_boxes`) is a separate step.

    Args:
        frames: ``[F, H, W, 3]`` uint8 frames (any channel order; it is kept).
        boxes: ``[F, 4]`` xyxy face boxes in pixels.
        crop_scale: Margin around the face (official default 0.4).

    Returns:
        ``[F, 224, 224, 3]`` uint8 crops in the channel order of ``frames``.
    """
    frames = np.asarray(frames)
    boxes = np.asarray(boxes, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if boxes.shape != (frames.shape[0], 4):
        raise ValueError(f"boxes must be [F, 4] = [{frames.shape[0]}, 4], got {list(boxes.shape)}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes must be finite")
    height, width = frames.shape[1:3]
    out = np.empty((frames.shape[0], CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    for i, (frame, (x0, y0, x1, y1)) in enumerate(zip(frames, boxes)):
        s = max(y1 - y0, x1 - x0) / 2
        if s <= 0:
            raise ValueError(f"frame {i}: empty face box {[x0, y0, x1, y1]}")
        pad = int(s * (1 + 2 * crop_scale))
        cy, cx = (y0 + y1) / 2 + pad, (x0 + x1) / 2 + pad  # centre in padded coordinates
        # The official slice bounds in the padded frame; a stop past the end is cut there (numpy slicing), a
        # start before 0 (a box centre far outside the frame) is clamped.
        r0 = max(int(cy - s), 0)
        r1 = min(int(cy + s * (1 + 2 * crop_scale)), height + 2 * pad)
        c0 = max(int(cx - s * (1 + crop_scale)), 0)
        c1 = min(int(cx + s * (1 + crop_scale)), width + 2 * pad)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"frame {i}: face box {[x0, y0, x1, y1]} gives an empty crop")
        patch = np.full((r1 - r0, c1 - c0, 3), CROP_PAD_VALUE, dtype=np.uint8)
        # Copy the part of the real frame that overlaps the crop (frame pixel (r, c) is padded (r+pad, c+pad)).
        fr0, fr1 = max(r0 - pad, 0), min(r1 - pad, height)
        fc0, fc1 = max(c0 - pad, 0), min(c1 - pad, width)
        if fr1 > fr0 and fc1 > fc0:
            patch[fr0 + pad - r0 : fr1 + pad - r0, fc0 + pad - c0 : fc1 + pad - c0] = frame[fr0:fr1, fc0:fc1]
        out[i] = cv2.resize(patch, (CROP_SIZE, CROP_SIZE))
    return out


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
        model: A :class:`SyncNet` (from :func:`load_syncnet`); it is put in eval mode for the call and its
            previous mode restored.
        frames_224: ``[F, 224, 224, 3]`` uint8 RGB face crops (:func:`crop_faces`), 25 fps.
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
