"""HyperIQA quality score of a clip, under the official test-time protocol with reproducible crops.

The test-time protocol of the official code (github.com/SSL92/hyperIQA, ``demo.py``; ``data_loader.py`` for
KonIQ-10k) is: PIL image → ``torchvision.transforms.Resize((512, 384))`` → ``RandomCrop(224)`` →
``ToTensor`` → ImageNet ``Normalize``, repeated for 10 random crops (25 in ``HyerIQASolver.py``) whose
predictions are averaged. :func:`score_frames` applies it to video frames with seeded crops; see its
docstring. The network is :class:`data_prep.models.hyperiqa.HyperNet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from data_prep.models.hyperiqa import CHECKPOINT_NAME, CROP_SIZE, HyperNet

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESIZE_HW",
    "QualityScore",
    "crop_offsets",
    "preprocess_crops",
    "sample_frame_indices",
    "score_frames",
]

# torchvision's Resize takes (height, width): KonIQ images (1024×768 landscape) were squashed to portrait
# 384 wide × 512 tall during training and testing, so the same (aspect-changing) resize is kept here.
RESIZE_HW = (512, 384)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class QualityScore:
    """HyperIQA result for one clip.

    Attributes:
        score: Mean of ``frame_scores`` (the value compared with the config threshold).
        frame_scores: Mean crop score per sampled frame ``[num_frames]``.
        crop_scores: Every crop's score ``[num_frames, crops_per_frame]``.
        protocol: JSON-serialisable record of how the score was computed (for the ledger): frame indices,
            crop offsets, resize, crop size, normalisation, seed.
    """

    score: float
    frame_scores: np.ndarray
    crop_scores: np.ndarray
    protocol: dict[str, Any] = field(default_factory=dict)


def sample_frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """Evenly spaced frame indices: the centre of each of ``num_frames`` equal segments of the clip.

    Index ``i`` is ``floor((i + 0.5) * N / k)`` with ``k = min(num_frames, N)``; centres avoid the first and
    last frames, where cuts and fades sit, and give distinct indices whenever ``k ≤ N``.

    Args:
        num_available: Frames in the clip, ``N ≥ 1``.
        num_frames: Frames wanted, ``≥ 1``.

    Returns:
        Sorted int64 indices ``[k]``.
    """
    if num_available < 1 or num_frames < 1:
        raise ValueError(f"need at least one frame, got num_available={num_available}, num_frames={num_frames}")
    k = min(num_frames, num_available)
    return np.floor((np.arange(k) + 0.5) * num_available / k).astype(np.int64)


def crop_offsets(num_frames: int, crops_per_frame: int, seed: int) -> np.ndarray:
    """Top-left corners of the random 224 crops inside the 512×384 (height × width) resized frame.

    Drawn as ``numpy.random.default_rng(seed).integers(0, (512 - 224 + 1, 384 - 224 + 1),
    size=(num_frames, crops_per_frame, 2))``: the same range as torchvision's ``RandomCrop`` (every valid
    position, uniform), but reproducible and independent of the clip's length or content.

    Args:
        num_frames: Sampled frames.
        crops_per_frame: Crops per frame.
        seed: Generator seed.

    Returns:
        ``[num_frames, crops_per_frame, 2]`` int64 (top, left).
    """
    high = (RESIZE_HW[0] - CROP_SIZE + 1, RESIZE_HW[1] - CROP_SIZE + 1)
    return np.random.default_rng(seed).integers(0, high, size=(num_frames, crops_per_frame, 2))


def preprocess_crops(frame: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
    """Resize one frame as the official loader does and cut normalised crops.

    PIL bilinear resize to 384 wide × 512 tall (what ``torchvision.transforms.Resize((512, 384))`` does to
    the PIL images the official code loads), crops at ``offsets``, scaling to [0, 1] and ImageNet
    mean/std normalisation.

    Args:
        frame: RGB ``[H, W, 3]`` uint8.
        offsets: ``[C, 2]`` (top, left) crop corners in the resized frame.

    Returns:
        ``[C, 3, 224, 224]`` float32.
    """
    height, width = RESIZE_HW
    resized = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
    crops = np.stack([resized[t : t + CROP_SIZE, s : s + CROP_SIZE] for t, s in offsets])
    tensor = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (tensor - mean) / std


def score_frames(
    model: HyperNet,
    frames: np.ndarray,
    num_frames: int = 8,
    crops_per_frame: int = 10,
    seed: int = 0,
    batch_size: int = 16,
) -> QualityScore:
    """Score a clip with HyperIQA under a fixed, reproducible protocol.

    Protocol (the official test-time transform of ``demo.py`` with seeded crops):

    1. Frames: ``k = min(num_frames, N)`` frames at :func:`sample_frame_indices` (segment centres).
    2. Each frame is resized (PIL bilinear, aspect not kept) to 512 tall × 384 wide, as
       ``torchvision.transforms.Resize((512, 384))`` in the official KonIQ-10k loader.
    3. ``crops_per_frame`` 224×224 crops per frame at :func:`crop_offsets` ``(k, crops_per_frame, seed)``;
       the default of 10 is demo.py's count.
    4. Crops are scaled to [0, 1] and normalised with the ImageNet mean/std, then run through the hyper and
       target networks in batches of ``batch_size`` (eval mode, no gradients).
    5. Frame score = mean of its crops (demo.py averages its 10 crops); clip score = mean of frame scores.

    The same inputs and seed give the same score; ``batch_size`` changes only memory use.

    Args:
        model: Loaded :class:`HyperNet` (``load_hyperiqa``); run on its own device, restored to its previous
            train/eval mode afterwards.
        frames: Clip ``[N, H, W, 3]`` uint8 RGB.
        num_frames: Frames to sample.
        crops_per_frame: Random crops per frame.
        seed: Crop generator seed.
        batch_size: Crops per network call.

    Returns:
        The clip's :class:`QualityScore`.

    Raises:
        ValueError: ``frames`` is not a non-empty uint8 ``[N, H, W, 3]`` array, or a count is below 1.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ValueError(f"frames must be non-empty uint8 [N, H, W, 3] RGB, got {frames.dtype} {list(frames.shape)}")
    if crops_per_frame < 1 or batch_size < 1:
        raise ValueError(f"crops_per_frame and batch_size must be ≥ 1, got {crops_per_frame}, {batch_size}")
    indices = sample_frame_indices(frames.shape[0], num_frames)
    offsets = crop_offsets(len(indices), crops_per_frame, seed)
    device = next(model.parameters()).device
    crops = torch.cat([preprocess_crops(frames[i], off) for i, off in zip(indices, offsets)])
    was_training = model.training
    model.eval()  # BatchNorm must use its running statistics, as in the official test code
    try:
        with torch.inference_mode():
            scores = torch.cat([model.score(chunk.to(device)) for chunk in crops.split(batch_size)])
    finally:
        model.train(was_training)
    crop_scores = scores.double().cpu().numpy().reshape(len(indices), crops_per_frame)
    frame_scores = crop_scores.mean(axis=1)
    protocol = {
        "model": "hyperiqa",
        "checkpoint": CHECKPOINT_NAME,
        "frame_sampling": "segment centres floor((i + 0.5) * N / k)",
        "num_frames_requested": int(num_frames),
        "frame_indices": indices.tolist(),
        "resize_hw": list(RESIZE_HW),
        "resize_interpolation": "PIL bilinear",
        "crop_size": CROP_SIZE,
        "crops_per_frame": int(crops_per_frame),
        "crop_sampler": "numpy.random.default_rng(seed).integers(0, (H - crop + 1, W - crop + 1), size=(k, crops, 2))",
        "crop_offsets": offsets.tolist(),
        "seed": int(seed),
        "normalize_mean": list(IMAGENET_MEAN),
        "normalize_std": list(IMAGENET_STD),
        "aggregate": "mean over crops, then mean over frames",
    }
    return QualityScore(
        score=float(frame_scores.mean()), frame_scores=frame_scores, crop_scores=crop_scores, protocol=protocol
    )
