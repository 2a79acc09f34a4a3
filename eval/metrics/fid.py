"""FID: Fréchet distance between Inception-v3 pool3 features of generated and reference frames.

The feature extractor is pytorch-fid's (``pytorch_fid.inception.InceptionV3`` with ``use_fid_inception=True``,
output block 3): torchvision's Inception-v3 with 1008 classes, its ``Mixed_5b … Mixed_7c`` blocks replaced by
pytorch-fid's ``FIDInception*`` blocks (the TF graph's pooling), and the TF FID weights
``pt_inception-2015-12-05-6726825d.pth``. Images go in as RGB in [0, 1], are resized to 299×299 (bilinear,
``align_corners=False``), scaled to [-1, 1], and the 2048-d output of the final average pool is the
feature. The weights come from a local file (:func:`load_fid_inception`), never a download; the state-dict
keys are torchvision's ``Inception3`` keys, as in the official file.

Every frame of every video is one sample. FID over few frames is biased upwards; compare values computed
over the same number of frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eval.metrics.frechet import frechet_distance_from_features
from eval.metrics.video import as_video
from eval.metrics.weights import require_file
from trainer.model.weights import load_strict, read_state_dict

__all__ = ["FIDInception", "fid", "frames_of", "inception_features", "load_fid_inception"]

FEATURE_DIM = 2048


class FIDInception(nn.Module):
    """pytorch-fid's FID Inception-v3, up to the 2048-d pool3 features.

    ``self.net`` is the torchvision ``Inception3`` (1008 classes, no aux head) with pytorch-fid's FID blocks,
    so ``self.net.state_dict()`` has the keys of ``pt_inception-2015-12-05-6726825d.pth`` (``fc`` included,
    though the features do not use it).
    """

    def __init__(self) -> None:
        super().__init__()
        from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
        from torchvision.models.inception import Inception3

        net = Inception3(num_classes=1008, aux_logits=False, transform_input=False, init_weights=False)
        net.Mixed_5b = FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = FIDInceptionE_1(1280)
        net.Mixed_7c = FIDInceptionE_2(2048)
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool3 features.

        Args:
            images: ``[B, 3, H, W]`` RGB float in [0, 1].

        Returns:
            ``[B, 2048]``.
        """
        n = self.net
        x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = n.maxpool1(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))))
        x = n.maxpool2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)))
        for block in (n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e):
            x = block(x)
        x = n.Mixed_7c(n.Mixed_7b(n.Mixed_7a(x)))
        return n.avgpool(x).flatten(1)


def load_fid_inception(path: str | os.PathLike, device: str | torch.device = "cpu") -> FIDInception:
    """Load the FID Inception from ``pt_inception-2015-12-05-6726825d.pth`` (strict, keys checked).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where the file comes from).
        ValueError: The file is not a state dict in the official layout.
    """
    p = require_file(path, "fid_inception")
    layout = "the FID Inception (pt_inception-2015-12-05) layout"
    model = FIDInception()
    load_strict(model.net, read_state_dict(p, layout), p, layout)
    model.requires_grad_(False)
    return model.to(device).eval()


def inception_features(model: nn.Module, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Pool3 features of ``uint8 [N, H, W, 3]`` RGB frames (any input :func:`~eval.metrics.video.as_video` takes).

    Returns:
        float64 ``[N, 2048]`` (``[N, D]`` for another extractor module).
    """
    frames = as_video(frames, "frames")
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, frames.shape[0], max(1, batch_size)):
            x = torch.from_numpy(frames[start : start + batch_size]).to(device).permute(0, 3, 1, 2).float() / 255.0
            out.append(model(x).double().cpu())
    return torch.cat(out).numpy()


def frames_of(videos: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """All frames of one ``[T, H, W, 3]`` video or of several (same frame size), as uint8 ``[N, H, W, 3]``."""
    if isinstance(videos, np.ndarray | torch.Tensor):
        return as_video(videos)
    arrays = [as_video(v, f"video {i}") for i, v in enumerate(videos)]
    if not arrays:
        raise ValueError("no videos given")
    sizes = {a.shape[1:] for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"videos differ in frame size: {sorted(sizes)}")
    return np.concatenate(arrays)


def fid(
    generated: np.ndarray | Sequence[np.ndarray],
    reference: np.ndarray | Sequence[np.ndarray],
    extractor: Callable[[np.ndarray], np.ndarray],
) -> float:
    """FID between the frames of ``generated`` and ``reference`` videos.

    Args:
        generated: One ``[T, H, W, 3]`` video or a sequence of them.
        reference: Likewise (the counts need not match).
        extractor: Maps ``uint8 [N, H, W, 3]`` frames to ``[N, D]`` features, e.g.
            ``lambda f: inception_features(model, f)``; any extractor can be plugged in.

    Returns:
        The Fréchet distance of the two feature sets (0 for identical sets).
    """
    return frechet_distance_from_features(extractor(frames_of(generated)), extractor(frames_of(reference)))
