"""Where the metric networks' weight files are, and the error raised when one is absent.

No weights are ever downloaded: every network is loaded from a local file given explicitly or through
an environment variable (:meth:`MetricWeights.from_env`). A missing file raises ``FileNotFoundError``
naming the path, the expected file and where the official file comes from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = ["WEIGHT_SOURCES", "MetricWeights", "require_file"]


@dataclass(frozen=True)
class WeightSource:
    """One official weight file.

    Attributes:
        filename: The official file name (with ``folder``: a file the folder must hold).
        env: Environment variable :meth:`MetricWeights.from_env` reads.
        origin: Where the file comes from (project and URL).
    """

    filename: str
    env: str
    origin: str
    folder: bool = False  # the path is a folder holding ``filename`` (a transformers model), not the file


WEIGHT_SOURCES: dict[str, WeightSource] = {
    "syncnet": WeightSource(
        "syncnet_v2.model",
        "TALKDIT_SYNCNET",
        "joonson/syncnet_python (download_model.sh): http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
    ),
    "s3fd": WeightSource(
        "sfd_face.pth",
        "TALKDIT_S3FD",
        "joonson/syncnet_python (download_model.sh, detectors/s3fd/weights): "
        "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth; without it sync_protocol=official "
        "detects faces with MediaPipe and the tables say so",
    ),
    "lpips_alexnet": WeightSource(
        "alexnet-owt-7be5be79.pth",
        "TALKDIT_LPIPS_ALEXNET",
        "torchvision's ImageNet AlexNet (AlexNet_Weights.IMAGENET1K_V1): "
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ),
    "fid_inception": WeightSource(
        "pt_inception-2015-12-05-6726825d.pth",
        "TALKDIT_FID_INCEPTION",
        "mseitzer/pytorch-fid (the TF FID Inception port): https://github.com/mseitzer/pytorch-fid/releases/download/"
        "fid_weights/pt_inception-2015-12-05-6726825d.pth",
    ),
    "i3d": WeightSource(
        "i3d_torchscript.pt",
        "TALKDIT_I3D",
        "universome/stylegan-v (src/metrics/frechet_video_distance.py): "
        "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt",
    ),
    "clip": WeightSource(
        "config.json",
        "TALKDIT_CLIP",
        "a transformers CLIP folder (CLIPVisionModelWithProjection + CLIPImageProcessor), e.g. "
        "https://huggingface.co/openai/clip-vit-base-patch16; AnyExpress's CLIP-I uses FaRL's LAION-Face CLIP",
        folder=True,
    ),
    "niqe": WeightSource(
        "modelparameters.mat",
        "TALKDIT_NIQE",
        "the NIQE release of Mittal et al. (http://live.ece.utexas.edu/research/quality/niqe_release.zip), "
        "its pristine model mu_prisparam/cov_prisparam; pyiqa's niqe_modelparameters.mat is the same file",
    ),
    "arcface": WeightSource(
        "backbone.pth",
        "TALKDIT_ARCFACE",
        "deepinsight/insightface recognition/arcface_torch model zoo: an iresnet100 backbone.pth "
        "(e.g. ms1mv3_arcface_r100_fp16)",
    ),
}


def require_file(path: str | os.PathLike | None, key: str) -> Path:
    """Return ``path`` as a ``Path`` if it is an existing file, else raise a ``FileNotFoundError`` saying what it is.

    Args:
        path: The configured path (``None``: not configured).
        key: A key of :data:`WEIGHT_SOURCES`.

    Raises:
        FileNotFoundError: ``path`` is ``None`` or not a file; the message names the path, the official file
            name, the environment variable and where the file comes from.
    """
    src = WEIGHT_SOURCES[key]
    if path is None:
        raise FileNotFoundError(
            f"no {src.filename} configured for {key}: pass its path or set {src.env}; the file comes from {src.origin}"
        )
    p = Path(path)
    if src.folder and p.is_dir() and (p / src.filename).is_file():
        return p
    if src.folder or not p.is_file():
        raise FileNotFoundError(
            f"{key} weights not found: {os.fspath(p)!r} (expected {src.filename}, from {src.origin}; "
            f"set {src.env} or pass the path)"
        )
    return p


@dataclass(frozen=True)
class MetricWeights:
    """Paths of the weight files the network-based metrics need (``None``: not available; the metric is skipped).

    Attributes:
        syncnet: ``syncnet_v2.model`` (Sync-C, Sync-D, AV offset).
        s3fd: ``sfd_face.pth``, the face detector of the official sync protocol (MediaPipe without it).
        lpips_alexnet: ``alexnet-owt-7be5be79.pth`` (LPIPS backbone; the LPIPS linear layers ship with ``lpips``).
        fid_inception: ``pt_inception-2015-12-05-6726825d.pth`` (FID).
        i3d: ``i3d_torchscript.pt`` (FVD).
        arcface: insightface ``backbone.pth`` of an iresnet100 (CSIM, FaceSim).
        clip: A transformers CLIP folder (CLIP-I).
        niqe: NIQE's pristine model ``modelparameters.mat``.
    """

    syncnet: Path | None = None
    s3fd: Path | None = None
    lpips_alexnet: Path | None = None
    fid_inception: Path | None = None
    i3d: Path | None = None
    arcface: Path | None = None
    clip: Path | None = None
    niqe: Path | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> MetricWeights:
        """Paths from the environment variables of :data:`WEIGHT_SOURCES` (``TALKDIT_SYNCNET``, ``TALKDIT_I3D``, ...).

        Args:
            environ: The environment to read (default ``os.environ``); unset or empty variables give ``None``.
        """
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(WEIGHT_SOURCES[f.name].env, "")
            values[f.name] = Path(raw) if raw else None
        return cls(**values)
