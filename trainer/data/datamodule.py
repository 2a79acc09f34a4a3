"""LightningDataModule streaming WebDataset shards of the DESIGN §5 schema."""

from __future__ import annotations

import glob
import os
import zlib
from functools import partial

import lightning as L
import numpy as np
import torch
import webdataset as wds
from braceexpand import braceexpand
from torch.utils.data import DataLoader, get_worker_info

from trainer.config.schema import DataConfig
from trainer.data.decode import decode_sample
from trainer.data.schema import FeatureSpec
from trainer.data.transforms import collate_clips, fit_clip


def expand_shards(spec: str) -> list[str]:
    """Shard paths from a brace pattern, glob or comma-separated list (sorted, deduplicated).

    Raises:
        FileNotFoundError: A local pattern matches no file (the pattern is named).
    """
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        for item in braceexpand(part):
            if "://" in item or item.startswith("pipe:"):
                out.append(item)
                continue
            matches = sorted(glob.glob(item)) if glob.has_magic(item) else ([item] if os.path.isfile(item) else [])
            if not matches:
                raise FileNotFoundError(f"data.shards: no shard file matches {item!r}")
            out.extend(matches)
    if not out:
        raise FileNotFoundError(f"data.shards={spec!r} names no shard")
    return list(dict.fromkeys(out))


def _fit(sample, cfg: DataConfig, num_refs: int, seed: int):
    info = get_worker_info()
    worker = info.id if info is not None else 0
    # One stream of start offsets per (seed, rank, worker, sample key) keeps cuts reproducible.
    rank = int(os.environ.get("RANK", 0))
    rng = np.random.default_rng([seed, rank, worker, zlib.crc32(sample.key.encode())])
    return fit_clip(sample, cfg.num_frames, cfg.height, cfg.width, num_refs, rng, cfg.default_caption)


def build_dataset(
    cfg: DataConfig, features: FeatureSpec, num_reference_frames: int, shuffle: bool = True
) -> wds.WebDataset:
    """An endless WebDataset pipeline of :class:`~trainer.data.transforms.TrainingClip` samples.

    Shards are split across nodes/ranks and dataloader workers, shuffled by shard and in a buffer,
    decoded and validated (a bad sample raises :class:`~trainer.data.schema.ShardSampleError` naming
    the shard, the key and the member).

    Args:
        cfg: Data settings.
        features: Expected feature layout.
        num_reference_frames: Reference frames per sample.
        shuffle: Shuffle shards and samples.
    """
    urls = expand_shards(cfg.shards)
    ds = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if shuffle else False,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        seed=cfg.seed,
        empty_check=False,
    ).repeat()
    ds = ds.map(partial(decode_sample, features=features, decode_latents=cfg.use_cached_latents))
    if shuffle:
        ds = ds.shuffle(cfg.shuffle_buffer)
    return ds.map(partial(_fit, cfg=cfg, num_refs=num_reference_frames, seed=cfg.seed))


class TalkingHeadDataModule(L.LightningDataModule):
    """Training batches from shards.

    Args:
        cfg: Data settings.
        features: Expected feature layout (from the audio config).
        num_reference_frames: Reference frames per sample (from the objective config).
    """

    def __init__(self, cfg: DataConfig, features: FeatureSpec, num_reference_frames: int):
        super().__init__()
        self.cfg = cfg
        self.features = features
        self.num_reference_frames = num_reference_frames

    def _workers(self, num_shards: int, world: int) -> int:
        # A worker that receives no shard would spin forever in the endless pipeline; never start one.
        per_rank = num_shards // world
        if per_rank < 1:
            raise ValueError(
                f"data.shards: {num_shards} shard(s) for {world} ranks; every rank needs at least one shard"
            )
        return min(self.cfg.num_workers, per_rank)

    def train_dataloader(self) -> DataLoader:
        """Endless loader of collated batches (the run length is ``loop.max_steps``)."""
        world = self.trainer.world_size if self.trainer is not None else 1
        workers = self._workers(len(expand_shards(self.cfg.shards)), world)
        ds = build_dataset(self.cfg, self.features, self.num_reference_frames)
        return DataLoader(
            ds,
            batch_size=self.cfg.batch_size,
            num_workers=workers,
            collate_fn=collate_clips,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
