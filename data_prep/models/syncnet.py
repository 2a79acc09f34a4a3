"""SyncNet (Chung & Zisserman 2016, "Out of time"): the network and its official weights.

This reproduces the official ``joonson/syncnet_python`` code, which is the reference every lip-sync paper's
Sync-C / Sync-D numbers come from. This module holds ``SyncNetModel.py`` (class ``S``): the architecture, with
the same ``netcnnaud`` / ``netfcaud`` / ``netcnnlip`` / ``netfclip`` Sequentials layer by layer, so the
official ``syncnet_v2.model`` loads key for key (:class:`SyncNet`, :func:`load_syncnet`).

The rest of the official code is reproduced beside it: the face crops the network expects
(``run_pipeline.py``) in :mod:`data_prep.models.syncnet_crops`, and the scoring (``SyncNetInstance.py``:
audio–visual offset, confidence Sync-C, distance Sync-D) in :mod:`data_prep.models.syncnet_scoring`.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from trainer.model.weights import load_strict, read_state_dict

__all__ = ["SYNCNET_URL", "SyncNet", "load_syncnet"]

SYNCNET_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"


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
