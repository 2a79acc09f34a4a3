"""LPIPS (Zhang et al. 2018), version 0.1 with the AlexNet trunk: the ``lpips`` package's network.

The model is ``lpips.LPIPS(net="alex", version="0.1")``. Its five linear calibration layers
(``lin0 … lin4``) ship inside the ``lpips`` package (``lpips/weights/v0.1/alex.pth``) and are loaded strictly
from there. The AlexNet trunk (torchvision's ImageNet AlexNet, ``alexnet-owt-7be5be79.pth``) is read from a
local file instead of being downloaded: :func:`load_lpips` builds the package's network with a randomly
initialised trunk and overwrites every trunk tensor from that file, checked key for key against
torchvision's ``alexnet`` layout. A missing file raises ``FileNotFoundError``; a random trunk is only used
when asked for explicitly (``alexnet_path=None, random_trunk=True``, for tests).

Frames are fed as the package expects: RGB scaled to [-1, 1], full resolution, one distance per frame.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eval.metrics.video import as_video, check_same_shape
from eval.metrics.weights import require_file
from trainer.model.weights import load_strict, read_state_dict

__all__ = ["LPIPS_LINEAR_KEYS", "load_lpips", "lpips_distance", "lpips_per_frame"]

LPIPS_LINEAR_KEYS = tuple(f"lin{i}.model.1.weight" for i in range(5))
# lpips' alexnet splits torchvision's ``features`` Sequential into slices, keeping the child indices.
_TRUNK_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}  # features.<index> -> net.slice<k>.<index>


def _package_linear_weights() -> dict[str, torch.Tensor]:
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    if not path.is_file():
        raise FileNotFoundError(f"the lpips package's linear-layer weights are missing: {os.fspath(path)!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if set(state) != set(LPIPS_LINEAR_KEYS):
        raise ValueError(f"{os.fspath(path)!r} holds keys {sorted(state)}, expected {list(LPIPS_LINEAR_KEYS)}")
    return state


def _alexnet_features_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a torchvision AlexNet state-dict file, validated against the layout."""
    import torchvision

    layout = "torchvision's alexnet layout (alexnet-owt-7be5be79.pth)"
    model = torchvision.models.alexnet(weights=None)
    load_strict(model, read_state_dict(path, layout), path, layout)
    return {k: v for k, v in model.state_dict().items() if k.startswith("features.")}


def load_lpips(
    alexnet_path: str | os.PathLike | None, device: str | torch.device = "cpu", random_trunk: bool = False
) -> nn.Module:
    """Build LPIPS v0.1 (AlexNet) with the package's linear layers and the trunk from ``alexnet_path``.

    Args:
        alexnet_path: torchvision's ``alexnet-owt-7be5be79.pth`` (a state dict).
        device: Where the model goes.
        random_trunk: With ``alexnet_path=None``: keep the randomly initialised trunk (tests only; the
            distances are then not LPIPS values).

    Returns:
        The ``lpips.LPIPS`` module in eval mode, without gradients.

    Raises:
        FileNotFoundError: ``alexnet_path`` does not exist (or is ``None`` without ``random_trunk``).
        ValueError: The file is not a torchvision AlexNet state dict.
    """
    import lpips

    if alexnet_path is None and not random_trunk:
        require_file(None, "lpips_alexnet")
    trunk = None if alexnet_path is None else _alexnet_features_state(require_file(alexnet_path, "lpips_alexnet"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's note on lpips' legacy ``pretrained=False``
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    sd = model.state_dict()
    linear = _package_linear_weights()
    for k, v in linear.items():
        sd[k] = v
        sd[k.replace("lin", "lins.", 1)] = v  # the same modules, registered twice (lin<i> and lins.<i>)
    if trunk is not None:
        for key, value in trunk.items():
            _, index, name = key.split(".")
            sd[f"net.slice{_TRUNK_SLICES[int(index)]}.{index}.{name}"] = value
    model.load_state_dict(sd, strict=True)
    model.requires_grad_(False)
    return model.to(device).eval()


def lpips_per_frame(model: nn.Module, generated: np.ndarray, reference: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """LPIPS distance of each frame pair.

    Args:
        model: From :func:`load_lpips`.
        generated: ``[T, H, W, 3]`` video.
        reference: ``[T, H, W, 3]`` video of the same shape.
        batch_size: Frames per forward pass.

    Returns:
        float64 ``[T]``; 0 for identical frames.
    """
    gen, ref = as_video(generated, "generated"), as_video(reference, "reference")
    check_same_shape(gen, ref)
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, gen.shape[0], max(1, batch_size)):
            a = torch.from_numpy(gen[start : start + batch_size]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
            b = torch.from_numpy(ref[start : start + batch_size]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
            out.append(model(a, b).flatten().double().cpu())
    return torch.cat(out).numpy()


def lpips_distance(model: nn.Module, generated: np.ndarray, reference: np.ndarray, batch_size: int = 8) -> float:
    """Mean per-frame LPIPS (see :func:`lpips_per_frame`)."""
    return float(lpips_per_frame(model, generated, reference, batch_size).mean())
