"""LightningDataModule streaming WebDataset shards of the DESIGN §5 schema as equal-token batches."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from trainer.config.schema import AudioConfig, DataConfig
from trainer.data.buckets import Compression, buckets_for
from trainer.data.schema import FeatureSpec
from trainer.data.shard_paths import expand_shards
from trainer.data.stream import StreamSettings, TalkingHeadStream, readers_for, worker_init


def feature_spec(cfg) -> FeatureSpec:
    """Feature layout the shards must carry for a training config (its ``audio`` group)."""
    audio: AudioConfig = cfg.audio
    return FeatureSpec(layers=audio.feature_layers, dim=audio.feature_dim, rate=audio.feature_rate)


def stream_settings(
    cfg: DataConfig, features: FeatureSpec, num_reference_frames: int, compression: Compression
) -> StreamSettings:
    """Stream settings for a data config (buckets included) and the VAE's factors (``Compression.of(model.vae)``)."""
    return StreamSettings(
        seed=cfg.seed,
        shuffle_buffer=cfg.shuffle_buffer,
        buckets=buckets_for(cfg, compression),
        compression=compression,
        features=features,
        num_refs=num_reference_frames,
        min_mp=cfg.min_megapixels,
        max_mp=cfg.max_megapixels,
        use_cached_latents=cfg.use_cached_latents,
        default_caption=cfg.default_caption,
    )


class TalkingHeadDataModule(L.LightningDataModule):
    """Equal-token training batches from shards.

    Args:
        cfg: Data settings.
        features: Expected feature layout (from the audio config).
        num_reference_frames: Reference frames per sample (from the objective config).
        compression: The VAE's factors (``Compression.of(model.vae)``).
        start_position: Where each rank's readers stopped (``{rank: {worker: groups}}``) when resuming.
    """

    def __init__(
        self,
        cfg: DataConfig,
        features: FeatureSpec,
        num_reference_frames: int,
        compression: Compression,
        start_position: dict | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.settings = stream_settings(cfg, features, num_reference_frames, compression)
        self.start_position = start_position or {}

    def train_dataloader(self) -> DataLoader:
        """Endless loader of batches (the run length is ``loop.max_steps``)."""
        rank, world = 0, 1
        if self.trainer is not None:
            # Ranks of one sequence group read the same samples: the data is split over groups.
            mesh = getattr(self.trainer.lightning_module, "mesh", None)
            rank, world = (
                (mesh.dp_rank, mesh.dp_size)
                if mesh is not None
                else (self.trainer.global_rank, self.trainer.world_size)
            )
        urls = expand_shards(self.cfg.shards)
        workers = readers_for(len(urls), world, self.cfg.num_workers)
        start = {
            int(k): int(v) for k, v in self.start_position.get(str(rank), self.start_position.get(rank, {})).items()
        }
        stream = TalkingHeadStream(urls, self.settings, rank=rank, world=world, start_groups=start)
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=workers,
            worker_init_fn=worker_init,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=2 if workers > 0 else None,
        )
