"""HyperIQA (Su et al., CVPR 2020): the network behind data_prep's clip-quality filter, and its official weights.

HyperIQA splits quality prediction in two. A *hyper network* (a ResNet-50 with local distortion aware (LDA)
branches plus small convolutional heads) looks at a 224×224 crop and *generates the weights* of a per-image
*target network*, a 4-layer MLP with sigmoids; the target network then maps the crop's multi-scale LDA
feature vector to a score. The KonIQ-10k checkpoint predicts roughly 0–100, higher is better.

This module reproduces the official code (github.com/SSL92/hyperIQA, ``models.py``) so that its
``koniq_pretrained.pkl`` loads key for key with ``strict=True``:

* ``HyperNet(16, 112, 224, 112, 56, 28, 14, 7)`` (the arguments of ``demo.py`` and ``HyerIQASolver.py``);
  module names ``res`` (backbone), ``pool``, ``conv1``, ``fc{1..4}w_conv``, ``fc{1..4}b_fc``, ``fc5w_fc``,
  ``fc5b_fc``; the backbone is the torchvision ResNet-50 layout (stride on the 3×3 convolution) without
  ``avgpool``/``fc``, plus ``lda{1,2,3}_pool`` (1×1 conv + 7×7 average pool), ``lda4_pool`` and ``lda{1..4}_fc``.
* The generated weights are reshaped exactly like the official ``.view`` calls, so the checkpoint's heads
  produce the same matrices.
* The target network is applied batched (:func:`apply_target_net`, one ``baddbmm`` per layer); the official
  code builds a ``TargetNet`` of grouped 1×1 convolutions per batch, which computes the same products.

The test-time protocol that scores a clip's frames (resize, seeded crops, averaging) is
:mod:`data_prep.models.hyperiqa_scoring`.

Nothing here downloads weights: the backbone is built from scratch and every tensor, ImageNet-derived or
not, comes from the checkpoint (:func:`load_hyperiqa`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from trainer.model.weights import load_strict, read_state_dict, require_file

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_SOURCE",
    "CROP_SIZE",
    "KONIQ_ARGS",
    "HyperNet",
    "LDAResNet50",
    "apply_target_net",
    "load_hyperiqa",
]

CHECKPOINT_NAME = "koniq_pretrained.pkl"
CHECKPOINT_SOURCE = (
    "download koniq_pretrained.pkl (HyperIQA trained on KonIQ-10k) from the Google Drive link in the README of "
    "https://github.com/SSL92/hyperIQA (https://drive.google.com/file/d/1OOUmnbvpGea0LIGpIWEbOyxfWx6UCiiE)"
)
# HyperNet(lda_out_channels, hyper_in_channels, target_in_size, target_fc1..4_size, feature_size) as
# demo.py and HyerIQASolver.py construct it for the released checkpoint.
KONIQ_ARGS = (16, 112, 224, 112, 56, 28, 14, 7)
# The LDA branches' fc input sizes (16·8², 32·4², 64·2², 2048) fix the network input at 224×224.
CROP_SIZE = 224


class LDAResNet50(ResNet):
    """ResNet-50 with the local distortion aware (LDA) branches of HyperIQA (the official ``res`` module).

    The trunk keeps torchvision's ResNet-50 names and shapes (``conv1``, ``bn1``, ``layer1..4``) but drops
    ``avgpool`` and ``fc``, which the official backbone does not have. After each stage an LDA branch
    squeezes channels with a bias-free 1×1 conv (none after stage 4), average-pools 7×7 windows and maps the
    flattened result to a vector; the four vectors, concatenated, are the target network's input.

    Args:
        lda_out_channels: Output size of ``lda1_fc``–``lda3_fc``.
        in_chn: Total LDA vector size (the target network's input size); ``lda4_fc`` supplies the rest,
            ``in_chn - 3 * lda_out_channels``.
    """

    def __init__(self, lda_out_channels: int, in_chn: int) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])
        del self.avgpool, self.fc
        if in_chn <= 3 * lda_out_channels:
            raise ValueError(f"in_chn ({in_chn}) must exceed 3 * lda_out_channels ({3 * lda_out_channels})")
        # At a 224 input the stages are 56², 28², 14², 7²; 7×7 pooling leaves 8², 4², 2², 1² cells, hence the
        # fc input sizes (the official code hard-codes them the same way).
        self.lda1_pool = nn.Sequential(nn.Conv2d(256, 16, kernel_size=1, bias=False), nn.AvgPool2d(7, stride=7))
        self.lda1_fc = nn.Linear(16 * 64, lda_out_channels)
        self.lda2_pool = nn.Sequential(nn.Conv2d(512, 32, kernel_size=1, bias=False), nn.AvgPool2d(7, stride=7))
        self.lda2_fc = nn.Linear(32 * 16, lda_out_channels)
        self.lda3_pool = nn.Sequential(nn.Conv2d(1024, 64, kernel_size=1, bias=False), nn.AvgPool2d(7, stride=7))
        self.lda3_fc = nn.Linear(64 * 4, lda_out_channels)
        self.lda4_pool = nn.AvgPool2d(7, stride=7)
        self.lda4_fc = nn.Linear(2048, in_chn - 3 * lda_out_channels)
        # Same initialisation family as the official code (only matters for untrained use, e.g. tests).
        for module in (self.lda1_pool[0], self.lda2_pool[0], self.lda3_pool[0]):
            nn.init.kaiming_normal_(module.weight)
        for module in (self.lda1_fc, self.lda2_fc, self.lda3_fc, self.lda4_fc):
            nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the trunk and the LDA branches.

        Args:
            x: Normalised crops ``[B, 3, 224, 224]``.

        Returns:
            ``hyper_in_feat``: stage-4 features ``[B, 2048, 7, 7]``; ``target_in_vec``: LDA vector ``[B, in_chn]``.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        lda1 = self.lda1_fc(self.lda1_pool(x).flatten(1))
        x = self.layer2(x)
        lda2 = self.lda2_fc(self.lda2_pool(x).flatten(1))
        x = self.layer3(x)
        lda3 = self.lda3_fc(self.lda3_pool(x).flatten(1))
        x = self.layer4(x)
        lda4 = self.lda4_fc(self.lda4_pool(x).flatten(1))
        return {"hyper_in_feat": x, "target_in_vec": torch.cat((lda1, lda2, lda3, lda4), dim=1)}


class HyperNet(nn.Module):
    """HyperIQA hyper network: generates a per-image target MLP and its input vector.

    Parameter names and shapes equal the official ``models.HyperNet`` so ``koniq_pretrained.pkl`` loads with
    ``strict=True``. The target MLP has layers ``target_in_size → f1 → f2 → f3 → f4 → 1`` (sigmoid after the
    first four). Its weight matrices come from 3×3 convolutions over the ``feature_size²`` hyper feature map,
    each output channel map supplying ``feature_size²`` consecutive matrix entries; biases and the last layer's
    weights come from linear layers on the globally pooled hyper features.

    Args:
        lda_out_channels: Output size of the first three LDA branches (16 for the checkpoint).
        hyper_in_channels: Channels of the hyper feature map (112).
        target_in_size: Target network input size = LDA vector size (224).
        target_fc1_size: Target layer 1 width (112).
        target_fc2_size: Target layer 2 width (56).
        target_fc3_size: Target layer 3 width (28).
        target_fc4_size: Target layer 4 width (14).
        feature_size: Side of the hyper feature map, the backbone's stage-4 resolution (7 for 224 crops).

    Raises:
        ValueError: A weight matrix size is not divisible by ``feature_size²`` (the official constraint).
    """

    def __init__(
        self,
        lda_out_channels: int,
        hyper_in_channels: int,
        target_in_size: int,
        target_fc1_size: int,
        target_fc2_size: int,
        target_fc3_size: int,
        target_fc4_size: int,
        feature_size: int,
    ) -> None:
        super().__init__()
        self.hyper_in_channels = hyper_in_channels
        self.target_in_size = target_in_size
        self.target_sizes = (target_fc1_size, target_fc2_size, target_fc3_size, target_fc4_size)
        self.feature_size = feature_size
        cells = feature_size**2
        f1, f2, f3, f4 = self.target_sizes
        matrix_sizes = (target_in_size * f1, f1 * f2, f2 * f3, f3 * f4)
        for i, size in enumerate(matrix_sizes, start=1):
            if size % cells:
                raise ValueError(f"target fc{i} weight size {size} is not divisible by feature_size² = {cells}")

        # Registration order matters only for readability; names are what the checkpoint keys use.
        self.res = LDAResNet50(lda_out_channels, target_in_size)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv1 = nn.Sequential(
            nn.Conv2d(2048, 1024, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 512, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(512, hyper_in_channels, 1),
            nn.ReLU(inplace=True),
        )
        self.fc1w_conv = nn.Conv2d(hyper_in_channels, matrix_sizes[0] // cells, 3, padding=1)
        self.fc1b_fc = nn.Linear(hyper_in_channels, f1)
        self.fc2w_conv = nn.Conv2d(hyper_in_channels, matrix_sizes[1] // cells, 3, padding=1)
        self.fc2b_fc = nn.Linear(hyper_in_channels, f2)
        self.fc3w_conv = nn.Conv2d(hyper_in_channels, matrix_sizes[2] // cells, 3, padding=1)
        self.fc3b_fc = nn.Linear(hyper_in_channels, f3)
        self.fc4w_conv = nn.Conv2d(hyper_in_channels, matrix_sizes[3] // cells, 3, padding=1)
        self.fc4b_fc = nn.Linear(hyper_in_channels, f4)
        self.fc5w_fc = nn.Linear(hyper_in_channels, f4)
        self.fc5b_fc = nn.Linear(hyper_in_channels, 1)
        # The official code kaiming-initialises the weights of every head after res/pool/conv1.
        for name, module in self.named_children():
            if name.startswith("fc"):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        """Generate the target network for each crop.

        Shapes follow the official output dict, so the official ``TargetNet`` could consume it unchanged.

        Args:
            img: ImageNet-normalised crops ``[B, 3, 224, 224]``.

        Returns:
            ``target_in_vec`` ``[B, in, 1, 1]``; ``target_fc{k}w`` ``[B, out_k, in_k, 1, 1]`` and
            ``target_fc{k}b`` ``[B, out_k]`` for k = 1…5 (out_5 = 1, in_5 = f4).

        Raises:
            ValueError: ``img`` is not ``[B, 3, 224, 224]``.
        """
        if img.ndim != 4 or tuple(img.shape[1:]) != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(f"HyperIQA needs crops [B, 3, {CROP_SIZE}, {CROP_SIZE}], got {list(img.shape)}")
        batch, fs = img.shape[0], self.feature_size
        res_out = self.res(img)
        hyper = self.conv1(res_out["hyper_in_feat"]).reshape(batch, self.hyper_in_channels, fs, fs)
        pooled = self.pool(hyper).flatten(1)
        f1, f2, f3, f4 = self.target_sizes
        out = {"target_in_vec": res_out["target_in_vec"].reshape(batch, self.target_in_size, 1, 1)}
        # reshape of the contiguous [B, C, fs, fs] conv output = the official .view: entry (o, i) of the
        # matrix is flat element o * in + i of channel-major (c, y, x).
        shapes = ((f1, self.target_in_size), (f2, f1), (f3, f2), (f4, f3))
        for k, (rows, cols) in enumerate(shapes, start=1):
            weight_conv = getattr(self, f"fc{k}w_conv")
            bias_fc = getattr(self, f"fc{k}b_fc")
            out[f"target_fc{k}w"] = weight_conv(hyper).reshape(batch, rows, cols, 1, 1)
            out[f"target_fc{k}b"] = bias_fc(pooled).reshape(batch, rows)
        out["target_fc5w"] = self.fc5w_fc(pooled).reshape(batch, 1, f4, 1, 1)
        out["target_fc5b"] = self.fc5b_fc(pooled).reshape(batch, 1)
        return out

    def score(self, img: torch.Tensor) -> torch.Tensor:
        """Quality score per crop: hyper network then target network.

        Args:
            img: ImageNet-normalised crops ``[B, 3, 224, 224]``.

        Returns:
            Scores ``[B]`` (KonIQ checkpoint: about 0–100, higher is better).
        """
        return apply_target_net(self(img))


def apply_target_net(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Run every sample's generated target MLP on its own input vector, batched.

    Per sample b: ``h = σ(W1 v + b1)``, ``h = σ(W2 h + b2)``, ``h = σ(W3 h + b3)``, ``h = σ(W4 h + b4)``,
    ``q = W5 h + b5``. The official ``TargetFC`` evaluates each layer as a grouped 1×1 convolution with one
    group per sample; a batched matrix-vector product (``baddbmm``) is the same sum of products.

    Args:
        params: :meth:`HyperNet.forward` output: ``target_in_vec`` ``[B, in, 1, 1]`` (or ``[B, in]``),
            ``target_fc{k}w`` ``[B, out, in, 1, 1]`` (or ``[B, out, in]``), ``target_fc{k}b`` ``[B, out]``.

    Returns:
        Scores ``[B]``.
    """
    h = params["target_in_vec"].flatten(1)
    for k in range(1, 6):
        weight = params[f"target_fc{k}w"]
        weight = weight.reshape(weight.shape[0], weight.shape[1], weight.shape[2])
        bias = params[f"target_fc{k}b"]
        h = torch.baddbmm(bias.unsqueeze(-1), weight, h.unsqueeze(-1)).squeeze(-1)
        if k < 5:
            h = torch.sigmoid(h)
    return h.squeeze(-1)


def load_hyperiqa(path: str | Path) -> HyperNet:
    """Build ``HyperNet(16, 112, 224, 112, 56, 28, 14, 7)`` and load the official KonIQ-10k checkpoint.

    The file is the official ``torch.save`` of ``HyperNet.state_dict()``; it is read with
    ``weights_only=True`` and loaded with ``strict=True``. The one tolerated difference: BatchNorm
    ``num_batches_tracked`` counters, absent from files written by PyTorch < 0.4.1 and unused at inference,
    may be missing (:func:`trainer.model.weights.load_strict`).

    Args:
        path: ``koniq_pretrained.pkl``.

    Returns:
        The model on the CPU in eval mode.

    Raises:
        FileNotFoundError: ``path`` is missing (the message says where the official file comes from).
        ValueError: The file is not a readable state dict, or its keys or shapes differ from the official
            layout (the message names the first differing keys).
    """
    path = require_file(Path(path), CHECKPOINT_SOURCE)
    layout = f"the official HyperIQA ({CHECKPOINT_NAME}) layout"
    model = HyperNet(*KONIQ_ARGS)
    load_strict(model, read_state_dict(path, layout), path, layout, may_lack=(".num_batches_tracked",))
    return model.eval()
