"""Identity similarity from ArcFace embeddings: CSIM and AnyExpress's FaceSim.

Network: insightface ``arcface_torch``'s ``iresnet100`` (improved ResNet, 3/13/30/3 blocks of
BN-conv-BN-PReLU-conv-BN with a strided 1×1 projection on each stage's first block, then BN, a 25088→512
linear layer and a 512-d BatchNorm1d). :class:`IResNet` is written to have the official ``backbone.pth``
state-dict keys (``conv1``, ``bn1``, ``prelu``, ``layer1.0.bn1`` … ``layer4.2.bn3``, ``layerN.0.downsample.0/1``,
``bn2``, ``fc``, ``features``), so the official file loads strictly (:func:`load_arcface`).

Input: 112×112 RGB face crops aligned with a similarity transform of five points (eye centres, nose tip,
mouth corners; taken from MediaPipe mesh landmarks) onto ArcFace's standard template, values scaled to
[-1, 1] (``(x / 255 − 0.5) / 0.5``), as in insightface's ``norm_crop`` and ``arcface_torch/inference.py``.

- CSIM: mean over frames of the cosine similarity between the embedding of generated frame ``t`` and
  that of ground-truth frame ``t``.
- FaceSim (AnyExpress, appendix A.2.2): mean over generated frames of the cosine similarity between the
  frame's embedding and the embedding of one reference face image.

Frames without a face are left out of both means.
"""

from __future__ import annotations

import os

import cv2
import mediapipe as mp
import numpy as np
import torch
from torch import nn

from eval.metrics.weights import require_file
from trainer.model.weights import load_strict, read_state_dict

__all__ = [
    "ARCFACE_TEMPLATE",
    "IResNet",
    "align_faces",
    "arcface_embeddings",
    "cosine_similarity",
    "csim",
    "face_sim",
    "five_points",
    "iresnet100",
    "load_arcface",
    "similarity_transform",
]

# ArcFace's five-point template in a 112×112 crop: eye on the image's left, other eye, nose tip, mouth
# corner on the image's left, the other mouth corner.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
CROP_SIZE = 112
_fm = mp.solutions.face_mesh
_EYE_IMAGE_LEFT = tuple(sorted({i for e in _fm.FACEMESH_RIGHT_EYE for i in e}))  # subject's right eye
_EYE_IMAGE_RIGHT = tuple(sorted({i for e in _fm.FACEMESH_LEFT_EYE for i in e}))
NOSE_TIP, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = 1, 61, 291


class _Block(nn.Module):
    """Improved residual unit: ``bn1 → conv1 → bn2 → prelu → conv2 (stride) → bn3`` plus the shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch, eps=1e-5))
            if stride != 1 or in_ch != out_ch
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """arcface_torch's IResNet for 112×112 crops.

    Args:
        blocks: Residual units per stage (``(3, 13, 30, 3)`` is iresnet100).
        embed_dim: Embedding size (``num_features``).
    """

    def __init__(self, blocks: tuple[int, int, int, int] = (3, 13, 30, 3), embed_dim: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths, in_ch = (64, 128, 256, 512), 64
        for stage, (count, width) in enumerate(zip(blocks, widths), start=1):
            units = [_Block(in_ch, width, 2)] + [_Block(width, width, 1) for _ in range(count - 1)]
            self.add_module(f"layer{stage}", nn.Sequential(*units))
            in_ch = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, embed_dim)
        self.features = nn.BatchNorm1d(embed_dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (not normalised).

        Args:
            x: ``[B, 3, 112, 112]`` RGB in [-1, 1].

        Returns:
            ``[B, embed_dim]``.
        """
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))


def iresnet100() -> IResNet:
    """A randomly initialised iresnet100."""
    return IResNet((3, 13, 30, 3))


def load_arcface(path: str | os.PathLike, device: str | torch.device = "cpu") -> IResNet:
    """Load an arcface_torch iresnet100 ``backbone.pth`` strictly.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where the file comes from).
        ValueError: The file is not an iresnet100 state dict in the official layout (keys named).
    """
    p = require_file(path, "arcface")
    layout = "an arcface_torch iresnet100 backbone"
    model = iresnet100()
    load_strict(model, read_state_dict(p, layout), p, layout, may_lack=(".num_batches_tracked",))
    model.requires_grad_(False)
    return model.to(device).eval()


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """ArcFace's five points from mesh landmarks: eye centres (mean of each eye contour), nose tip, mouth corners.

    Args:
        landmarks: ``[..., 468, 2]`` pixel landmarks.

    Returns:
        ``[..., 5, 2]`` in the template's order.
    """
    lm = np.asarray(landmarks, np.float64)
    return np.stack(
        [
            lm[..., _EYE_IMAGE_LEFT, :].mean(axis=-2),
            lm[..., _EYE_IMAGE_RIGHT, :].mean(axis=-2),
            lm[..., NOSE_TIP, :],
            lm[..., MOUTH_IMAGE_LEFT, :],
            lm[..., MOUTH_IMAGE_RIGHT, :],
        ],
        axis=-2,
    )


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst`` (Umeyama 1991).

    Args:
        src: ``[K, 2]`` points.
        dst: ``[K, 2]`` points.

    Returns:
        ``[2, 3]`` affine matrix ``M`` with ``dst ≈ M @ [src; 1]``.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two [K >= 2, 2] point sets of one shape, got {list(src.shape)} and {list(dst.shape)}")
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    cov = d.T @ s / src.shape[0]
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    var = (s**2).sum() / src.shape[0]
    if var <= 0:
        raise ValueError("source points are all the same point")
    scale = float(np.trace(np.diag(sig) @ sign)) / var
    return np.hstack([scale * rot, (md - scale * rot @ ms)[:, None]])


def align_faces(frames: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """112×112 ArcFace crops of every frame with a face.

    Args:
        frames: ``uint8 [T, H, W, 3]`` RGB.
        points: ``[T, 5, 2]`` five points per frame (NaN: no face).

    Returns:
        ``(crops uint8 [K, 112, 112, 3], frame_indices [K])`` for the ``K`` frames with a face.
    """
    crops, kept = [], []
    for i, (frame, pts) in enumerate(zip(frames, points)):
        if not np.isfinite(pts).all():
            continue
        m = similarity_transform(pts, ARCFACE_TEMPLATE)
        crops.append(cv2.warpAffine(frame, m, (CROP_SIZE, CROP_SIZE), borderValue=0.0))
        kept.append(i)
    empty = np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    return (np.stack(crops) if crops else empty), np.asarray(kept, dtype=np.int64)


def arcface_embeddings(model: nn.Module, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Embeddings of ``uint8 [K, 112, 112, 3]`` RGB crops.

    Returns:
        float64 ``[K, D]`` (not normalised).
    """
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 [K, 112, 112, 3], got {crops.dtype} {list(crops.shape)}")
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, crops.shape[0], max(1, batch_size)):
            x = torch.from_numpy(crops[start : start + batch_size]).to(device).permute(0, 3, 1, 2).float()
            out.append(model((x / 255.0 - 0.5) / 0.5).double().cpu())
    dim = getattr(getattr(model, "features", None), "num_features", 512)
    return torch.cat(out).numpy() if out else np.zeros((0, dim))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``[N, D]`` and ``[N, D]`` (or ``[D]``, broadcast) embeddings → ``[N]``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embedding sizes differ: {a.shape[-1]} vs {b.shape[-1]}")
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("cosine similarity of a zero embedding is undefined")
    return (a * b).sum(axis=-1) / (na * nb)


def csim(generated: np.ndarray, reference: np.ndarray) -> float:
    """CSIM: mean cosine similarity of per-frame embeddings ``[T, D]`` of generated and ground-truth frames.

    Rows with NaN (no face in either frame) are left out.
    """
    g, r = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    if g.ndim != 2 or g.shape != r.shape:
        raise ValueError(f"embeddings must be two [T, D] arrays of one shape, got {list(g.shape)} and {list(r.shape)}")
    valid = np.isfinite(g).all(1) & np.isfinite(r).all(1)
    if not valid.any():
        raise ValueError("no frame has a face in both videos")
    return float(cosine_similarity(g[valid], r[valid]).mean())


def face_sim(generated: np.ndarray, reference: np.ndarray) -> float:
    """FaceSim (AnyExpress A.2.2): mean cosine similarity of frame embeddings ``[T, D]`` to one reference ``[D]``.

    Rows with NaN (no face) are left out.
    """
    g, r = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    if g.ndim != 2 or r.shape != (g.shape[1],):
        raise ValueError(f"need generated [T, D] and reference [D], got {list(g.shape)} and {list(r.shape)}")
    if not np.isfinite(r).all():
        raise ValueError("the reference embedding is not finite (no face in the reference image?)")
    valid = np.isfinite(g).all(1)
    if not valid.any():
        raise ValueError("no generated frame has a face")
    return float(cosine_similarity(g[valid], r).mean())
