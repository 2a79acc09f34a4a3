"""S3FD face detector (Zhang et al. 2017), as the official SyncNet pipeline runs it.

``joonson/syncnet_python`` detects faces with S3FD (``detectors/s3fd``) before it crops them for SyncNet, so
Sync-C / Sync-D as published depend on its boxes. This is an independent implementation of that detector:

- :class:`S3FDNet`: VGG-16 trunk with a dilated fc6 and 1×1 fc7, L2-normalised conv3_3 / conv4_3 / conv5_3
  sources (learned scales, initialised to 10, 8, 5), two extra stride-2 stages, and 3×3 box (``loc``) and
  class (``conf``) heads on six sources (strides 4 … 128). Attribute names and layer order follow the
  official ``S3FDNet``, so ``sfd_face.pth`` loads key for key (:func:`load_s3fd`, strict).
- The first class head has four outputs, three background and one face; the background score is their
  maximum ("max-out background label").
- :func:`prior_boxes`: one square anchor per cell, sizes 16 … 512 px, centred on the cell.
- :func:`detections`: boxes decoded with variances (0.1, 0.2), softmax scores, faces above 0.05 kept,
  non-maximum suppression at IoU 0.3 over the 5000 best, at most 750 per image.
- :meth:`S3FD.detect_faces`: the official call — the RGB frame scaled by ``scale`` (0.25 in the pipeline),
  per-channel means (R 123, G 117, B 104) subtracted, detections above ``conf_th`` (0.9) in original
  pixels, then NMS at IoU 0.1 across scales.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

from eval.metrics.weights import require_file
from trainer.model.weights import load_strict, read_state_dict

__all__ = ["S3FD", "S3FDNet", "detections", "load_s3fd", "prior_boxes"]

MIN_SIZES = (16, 32, 64, 128, 256, 512)
STEPS = (4, 8, 16, 32, 64, 128)
VARIANCES = (0.1, 0.2)
RGB_MEAN = np.array([123.0, 117.0, 104.0], np.float32)  # the official BGR mean (104, 117, 123), in RGB order


class L2Norm(nn.Module):
    """Per-position L2 normalisation over channels with a learned per-channel scale.

    Args:
        channels: Number of channels.
        scale: Initial value of every scale.
    """

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` → ``[B, C, H, W]``."""
        return self.weight[None, :, None, None] * x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps)


def _vgg() -> nn.ModuleList:
    layers: list[nn.Module] = []
    channels = 3
    # (output channels, convolutions) per VGG stage; stage 3 pools with ceil_mode as the official net does.
    for stage, (out, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        for _ in range(convs):
            layers += [nn.Conv2d(channels, out, 3, 1, padding=1), nn.ReLU(inplace=True)]
            channels = out
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=stage == 2))
    layers += [
        nn.Conv2d(512, 1024, 3, 1, padding=6, dilation=6),  # fc6
        nn.ReLU(inplace=True),
        nn.Conv2d(1024, 1024, 1, 1),  # fc7
        nn.ReLU(inplace=True),
    ]
    return nn.ModuleList(layers)


class S3FDNet(nn.Module):
    """The S3FD network of ``joonson/syncnet_python`` (``detectors/s3fd/nets.py``), state-dict compatible.

    ``vgg`` indices: conv3_3's ReLU is 15, conv4_3's 22, conv5_3's 29, fc7's ReLU 34; the normalised sources
    are taken after them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.vgg = _vgg()
        self.L2Norm3_3 = L2Norm(256, 10)
        self.L2Norm4_3 = L2Norm(512, 8)
        self.L2Norm5_3 = L2Norm(512, 5)
        self.extras = nn.ModuleList(
            [
                nn.Conv2d(1024, 256, 1, 1),
                nn.Conv2d(256, 512, 3, 2, padding=1),
                nn.Conv2d(512, 128, 1, 1),
                nn.Conv2d(128, 256, 3, 2, padding=1),
            ]
        )
        source_channels = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in source_channels])
        # Source 0 predicts 3 background scores and 1 face score (max-out background).
        self.conf = nn.ModuleList(
            [nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1) for i, c in enumerate(source_channels)]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Raw head outputs.

        Args:
            x: ``[B, 3, H, W]`` mean-subtracted RGB.

        Returns:
            ``(loc [B, P, 4], scores [B, P, 2], feature_maps)``: box offsets and softmax (background, face)
            scores for every prior, and each source's ``(height, width)`` (for :func:`prior_boxes`).
        """
        sources = []
        for start, stop, norm in ((0, 16, self.L2Norm3_3), (16, 23, self.L2Norm4_3), (23, 30, self.L2Norm5_3)):
            for k in range(start, stop):
                x = self.vgg[k](x)
            sources.append(norm(x))
        for k in range(30, len(self.vgg)):
            x = self.vgg[k](x)
        sources.append(x)
        for k, layer in enumerate(self.extras):
            x = F.relu(layer(x), inplace=True)
            if k % 2 == 1:
                sources.append(x)
        locs, confs = [], []
        for i, src in enumerate(sources):
            conf = self.conf[i](src)
            if i == 0:
                conf = torch.cat([conf[:, :3].max(dim=1, keepdim=True).values, conf[:, 3:]], dim=1)
            locs.append(self.loc[i](src).permute(0, 2, 3, 1))
            confs.append(conf.permute(0, 2, 3, 1))
        maps = [(int(t.shape[1]), int(t.shape[2])) for t in locs]
        loc = torch.cat([t.reshape(t.shape[0], -1) for t in locs], 1).view(x.shape[0], -1, 4)
        scores = torch.cat([t.reshape(t.shape[0], -1) for t in confs], 1).view(x.shape[0], -1, 2).softmax(dim=-1)
        return loc, scores, maps


def prior_boxes(image_hw: tuple[int, int], feature_maps: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Anchors ``[P, 4]`` as (cx, cy, w, h) relative to the image, in the heads' order (source, row, column).

    Source ``k`` has one square anchor of ``MIN_SIZES[k]`` pixels per cell, centred at
    ``((j + ½)·STEPS[k], (i + ½)·STEPS[k])`` pixels.
    """
    imh, imw = image_hw
    out = []
    for (fh, fw), step, size in zip(feature_maps, STEPS, MIN_SIZES):
        i, j = torch.meshgrid(
            torch.arange(fh, dtype=torch.float32), torch.arange(fw, dtype=torch.float32), indexing="ij"
        )
        cx, cy = (j.reshape(-1) + 0.5) / (imw / step), (i.reshape(-1) + 0.5) / (imh / step)
        wh = torch.tensor([size / imw, size / imh]).expand(cx.numel(), 2)
        out.append(torch.cat([torch.stack([cx, cy], 1), wh], 1))
    return torch.cat(out)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Offsets ``[P, 4]`` against ``priors`` ``[P, 4]`` (cx, cy, w, h) → corner boxes ``[P, 4]`` (x0, y0, x1, y1)."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])
    return torch.cat([centre - size / 2, centre + size / 2], 1)


def detections(
    loc: torch.Tensor,
    scores: torch.Tensor,
    priors: torch.Tensor,
    min_score: float = 0.05,
    nms_iou: float = 0.3,
    nms_top_k: int = 5000,
    top_k: int = 750,
) -> torch.Tensor:
    """The official ``Detect`` step: decoded face boxes per image, best first.

    Args:
        loc: ``[B, P, 4]`` offsets.
        scores: ``[B, P, 2]`` softmax (background, face) scores.
        priors: ``[P, 4]`` from :func:`prior_boxes`.
        min_score: Face scores at or below this are dropped.
        nms_iou: Suppression IoU.
        nms_top_k: Only the best this many enter NMS.
        top_k: Detections kept per image.

    Returns:
        ``[B, top_k, 5]`` rows ``(score, x0, y0, x1, y1)`` in relative coordinates; unused rows are zero.
    """
    out = torch.zeros(loc.shape[0], top_k, 5)
    for b in range(loc.shape[0]):
        boxes = decode_boxes(loc[b].float().cpu(), priors)
        face = scores[b, :, 1].float().cpu()
        keep = face > min_score
        boxes, face = boxes[keep], face[keep]
        best = face.argsort(descending=True)[:nms_top_k]
        kept = best[nms(boxes[best], face[best], nms_iou)][:top_k]
        out[b, : kept.numel()] = torch.cat([face[kept, None], boxes[kept]], 1)
    return out


class S3FD:
    """Face detection with a loaded :class:`S3FDNet` (the official ``S3FD`` wrapper's ``detect_faces``).

    Args:
        net: The network, in eval mode.
    """

    def __init__(self, net: S3FDNet) -> None:
        self.net = net.eval()
        self.device = next(net.parameters()).device

    @torch.no_grad()
    def detect_faces(self, image: np.ndarray, conf_th: float = 0.8, scales: Sequence[float] = (1.0,)) -> np.ndarray:
        """Faces in one frame.

        Args:
            image: ``[H, W, 3]`` uint8 RGB.
            conf_th: Face score threshold (the SyncNet pipeline passes 0.9).
            scales: Image scales the network runs at (the pipeline passes its ``facedet_scale``, 0.25).

        Returns:
            float64 ``[K, 5]`` rows ``(x0, y0, x1, y1, score)`` in pixels of ``image``.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 [H, W, 3] RGB, got {image.dtype} {list(image.shape)}")
        h, w = image.shape[:2]
        found = []
        for s in scales:
            scaled = cv2.resize(image, dsize=(0, 0), fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
            x = torch.from_numpy((scaled.astype(np.float32) - RGB_MEAN).transpose(2, 0, 1).copy())[None]
            loc, scores, maps = self.net(x.to(self.device))
            dets = detections(loc, scores, prior_boxes(scaled.shape[:2], maps))[0]
            dets = dets[dets[:, 0] > conf_th]
            pixels = dets[:, 1:].double() * torch.tensor([w, h, w, h], dtype=torch.float64)
            found.append(torch.cat([pixels, dets[:, :1].double()], 1))
        boxes = torch.cat(found) if found else torch.zeros(0, 5, dtype=torch.float64)
        keep = nms(boxes[:, :4], boxes[:, 4], 0.1)
        return boxes[keep].numpy()


def load_s3fd(path: str | os.PathLike | None, device: str | torch.device = "cpu") -> S3FD:
    """Load the official ``sfd_face.pth`` into :class:`S3FDNet`, key for key (strict).

    Args:
        path: The weight file (``None``: not configured).
        device: Where the network runs.

    Raises:
        FileNotFoundError: No file; the message names ``sfd_face.pth``, where it comes from and
            ``TALKDIT_S3FD`` (without it the official sync protocol detects faces with MediaPipe).
        ValueError: The file is not a state dict of tensors in the official layout (differing keys named).
    """
    file = require_file(path, "s3fd")
    layout = "the official S3FD (sfd_face.pth) layout"
    net = S3FDNet()
    load_strict(net, read_state_dict(file, layout), file, layout)
    return S3FD(net.to(device))
