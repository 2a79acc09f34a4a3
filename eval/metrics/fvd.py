"""FVD: Fréchet distance between I3D features of generated and reference video clips (StyleGAN-V protocol).

The feature extractor is the Kinetics-400 I3D TorchScript file ``i3d_torchscript.pt`` that StyleGAN-V
(``src/metrics/frechet_video_distance.py``) and most later video papers use, loaded with
``torch.jit.load`` from a local path (:func:`load_i3d`). It is called as StyleGAN-V calls it: a float
batch ``[N, 3, T, H, W]`` of raw 8-bit values in [0, 255] with ``rescale=True, resize=True,
return_features=True``, so the network itself maps values to [-1, 1] and resizes to 224×224, and returns
the 400-d pre-softmax features. Each video contributes one clip: its first ``num_frames`` (default 16)
consecutive frames; shorter videos are rejected.

The distance is :func:`eval.metrics.frechet.frechet_distance_from_features`. FVD needs many clips (the
covariance is 400×400); values over a handful of videos are only comparable with each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from eval.metrics.frechet import frechet_distance_from_features
from eval.metrics.video import as_video
from eval.metrics.weights import require_file

__all__ = ["I3D_FEATURE_DIM", "I3DFeatures", "fvd", "load_i3d", "video_clips"]

I3D_FEATURE_DIM = 400
DEFAULT_CLIP_FRAMES = 16


def load_i3d(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """``torch.jit.load`` the I3D TorchScript file, in eval mode on ``device``.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where the file comes from).
        ValueError: The file is not a TorchScript archive.
    """
    p = require_file(path, "i3d")
    try:
        model = torch.jit.load(os.fspath(p), map_location=device)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{os.fspath(p)!r} is not a TorchScript archive (expected i3d_torchscript.pt): {exc}") from exc
    return model.eval()


class I3DFeatures:
    """Maps clips to I3D features with StyleGAN-V's call.

    Args:
        model: The I3D TorchScript module (:func:`load_i3d`), or any callable with its signature
            ``model(x, rescale=..., resize=..., return_features=...)``.
        batch_size: Clips per forward pass.
    """

    def __init__(self, model: Callable[..., torch.Tensor], batch_size: int = 8) -> None:
        self.model, self.batch_size = model, max(1, batch_size)

    def _device(self) -> torch.device:
        params = getattr(self.model, "parameters", None)
        p = next(iter(params()), None) if params is not None else None
        return p.device if p is not None else torch.device("cpu")

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """Features of ``uint8 [N, T, H, W, 3]`` RGB clips.

        Returns:
            float64 ``[N, 400]``.
        """
        clips = np.asarray(clips)
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != np.uint8:
            raise ValueError(f"clips must be uint8 [N, T, H, W, 3], got {clips.dtype} {list(clips.shape)}")
        device = self._device()
        out = []
        with torch.inference_mode():
            for start in range(0, clips.shape[0], self.batch_size):
                x = torch.from_numpy(clips[start : start + self.batch_size]).to(device)
                x = x.permute(0, 4, 1, 2, 3).float()  # [N, 3, T, H, W], values in [0, 255]
                feats = self.model(x, rescale=True, resize=True, return_features=True)
                out.append(feats.reshape(feats.shape[0], -1).double().cpu())
        return torch.cat(out).numpy()


def video_clips(
    videos: np.ndarray | Sequence[np.ndarray], num_frames: int = DEFAULT_CLIP_FRAMES, clips_per_video: int | None = 1
) -> np.ndarray:
    """Non-overlapping clips of ``num_frames`` consecutive frames from the start of each video.

    Args:
        videos: A ``[T, H, W, 3]`` video or a sequence of them (same frame size).
        num_frames: Frames per clip.
        clips_per_video: At most this many clips per video (1: StyleGAN-V's protocol, the first
            ``num_frames`` frames); ``None``: every whole non-overlapping clip.

    Returns:
        uint8 ``[N, num_frames, H, W, 3]``, clips in video order.

    Raises:
        ValueError: A video is shorter than ``num_frames`` or the frame sizes differ.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if clips_per_video is not None and clips_per_video < 1:
        raise ValueError(f"clips_per_video must be >= 1 or None, got {clips_per_video}")
    if isinstance(videos, np.ndarray | torch.Tensor):
        videos = [videos]
    clips = []
    for i, v in enumerate(videos):
        v = as_video(v, f"video {i}")
        if v.shape[0] < num_frames:
            raise ValueError(f"video {i} has {v.shape[0]} frames; an FVD clip needs {num_frames}")
        count = v.shape[0] // num_frames
        if clips_per_video is not None:
            count = min(count, clips_per_video)
        clips.extend(v[k * num_frames : (k + 1) * num_frames] for k in range(count))
    if not clips:
        raise ValueError("no videos given")
    sizes = {c.shape[1:] for c in clips}
    if len(sizes) > 1:
        raise ValueError(f"videos differ in frame size: {sorted(sizes)}")
    return np.stack(clips)


def fvd(
    generated: np.ndarray | Sequence[np.ndarray],
    reference: np.ndarray | Sequence[np.ndarray],
    extractor: Callable[[np.ndarray], np.ndarray],
    num_frames: int = DEFAULT_CLIP_FRAMES,
    clips_per_video: int | None = 1,
) -> float:
    """FVD between clips of the generated and reference videos.

    Args:
        generated: Videos (``[T, H, W, 3]`` each, or one video); at least 2 clips in all.
        reference: Likewise.
        extractor: Maps ``uint8 [N, T, H, W, 3]`` clips to ``[N, D]`` features, e.g. :class:`I3DFeatures`.
        num_frames: Frames per clip.
        clips_per_video: See :func:`video_clips`.

    Returns:
        The Fréchet distance of the two clip-feature sets.
    """
    return frechet_distance_from_features(
        extractor(video_clips(generated, num_frames, clips_per_video)),
        extractor(video_clips(reference, num_frames, clips_per_video)),
    )
