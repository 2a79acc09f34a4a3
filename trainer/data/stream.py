"""The training sample stream: shards → samples → shuffle → plans → equal-token batches.

Every (rank, dataloader worker) pair reads its own share of the shards: each epoch the shard list is
permuted with a seed shared by all of them and dealt round-robin over the ``world × workers`` readers,
so within an epoch every sample is read exactly once across the whole job. Samples pass a seeded
shuffle buffer, are planned from their metadata (schema check, random resize, crop, bucket — no pixel
decoded), grouped per bucket until a bucket is full, and only then decoded.

Resuming: everything up to the grouping is deterministic and cheap, so a reader that must continue
after its ``n``-th group replays plans without decoding until it gets there. Each batch carries the
reader's identity and group count so that the training loop can record exactly what it consumed.
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from trainer.data.buckets import Bucket, Compression
from trainer.data.plan import Plan, decode_plan, plan_sample
from trainer.data.schema import UNREADABLE_SHARD_ERRORS, DataError, FeatureSpec, ShardSampleError
from trainer.data.transforms import collate_clips

log = logging.getLogger(__name__)


@dataclass
class StreamSettings:
    """What a stream needs besides its shards.

    Attributes:
        seed: Seed of shard order, shuffle and plans.
        shuffle_buffer: Samples in the shuffle buffer.
        buckets: Allowed batch shapes.
        compression: The VAE's factors (clip lengths in latent frames, cached latent shapes).
        features: Expected audio feature layout.
        num_refs: Reference frames per sample.
        min_mp: Smallest training area (megapixels).
        max_mp: Largest training area.
        use_cached_latents: Train from stored latents when a sample has them.
        default_caption: Caption of samples without one.
    """

    seed: int
    shuffle_buffer: int
    buckets: list[Bucket]
    compression: Compression
    features: FeatureSpec
    num_refs: int
    min_mp: float
    max_mp: float
    use_cached_latents: bool
    default_caption: str

    def plan(self, raw: dict, epoch: int) -> Plan:
        """:func:`trainer.data.plan.plan_sample` of a raw sample under these settings.

        Raises:
            ShardSampleError: A member is missing or malformed, or no bucket fits the clip.
        """
        return plan_sample(
            raw,
            epoch,
            self.seed,
            self.buckets,
            self.features,
            self.num_refs,
            self.min_mp,
            self.max_mp,
            self.use_cached_latents,
            self.compression,
        )


def shard_share(num_shards: int, epoch: int, seed: int, reader: int, readers: int) -> list[int]:
    """Shard indices reader ``reader`` of ``readers`` reads in ``epoch`` (a partition over readers)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_shards)
    return [int(i) for i in order[reader::readers]]


class TalkingHeadStream(IterableDataset):
    """Endless stream of equal-token batches for one rank.

    Iterate it through a ``DataLoader`` with ``batch_size=None``: batches are formed here.

    Args:
        urls: Shard URLs or paths (anything ``webdataset`` opens).
        settings: Stream settings.
        rank: This process's data-parallel rank.
        world: Data-parallel world size.
        start_groups: Groups each local worker already delivered (``{worker: n}``), to resume after.
    """

    def __init__(
        self,
        urls: list[str],
        settings: StreamSettings,
        rank: int = 0,
        world: int = 1,
        start_groups: dict[int, int] | None = None,
    ):
        super().__init__()
        if not settings.buckets:
            raise ValueError("no bucket fits data.tokens_per_batch in the megapixel range; see data.* settings")
        self.urls = list(urls)
        self.s = settings
        self.rank, self.world = rank, world
        self.start_groups = dict(start_groups or {})

    def _reader(self) -> tuple[int, int, int]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return worker, self.rank * workers + worker, self.world * workers

    # ------------------------------------------------------------------ raw samples, one epoch after another
    def raw_samples(self, reader: int, readers: int, counters: dict) -> Iterator[tuple[int, dict]]:
        """``(epoch, raw sample)`` for ever; each epoch reads this reader's share of the shards once.

        A shard that is not a readable tar file (or ends early) is skipped and counted like a bad sample; the
        samples read before the damage are kept.

        Raises:
            ValueError: A reader got no shard.
            DataError: Every shard of this reader's share is unreadable: it has no data at all.
        """
        epoch = 0
        while True:
            share = shard_share(len(self.urls), epoch, self.s.seed, reader, readers)
            if not share and epoch == 0:
                raise ValueError(
                    f"data.shards: {len(self.urls)} shards for {readers} readers (ranks x workers); "
                    "every reader needs at least one shard"
                )
            read, first_error = 0, None
            for i in share:
                try:
                    for sample in wds.tarfile_samples([{"url": self.urls[i]}]):
                        read += 1
                        yield epoch, sample
                except UNREADABLE_SHARD_ERRORS as err:
                    err = ShardSampleError(
                        self.urls[i], None, f"not a readable tar file ({' '.join(str(err).split())})"
                    )
                    first_error = first_error or err
                    counters["seen"] += 1
                    self._skip(counters, err, 1)
            if read == 0 and first_error is not None:
                raise DataError(
                    f"data.shards: no readable sample in the {len(share)} shard(s) of reader {reader} of {readers} "
                    f"(ranks x workers); the first: {first_error}"
                )
            epoch += 1

    def shuffled(self, samples: Iterator[tuple[int, dict]], reader: int) -> Iterator[tuple[int, dict]]:
        """A seeded shuffle buffer (a sample leaves at a random slot when a new one arrives)."""
        rng = np.random.default_rng([self.s.seed, 7919, reader])
        buf: list[tuple[int, dict]] = []
        for item in samples:
            if len(buf) < self.s.shuffle_buffer:
                buf.append(item)
                continue
            j = int(rng.integers(len(buf)))
            buf[j], item = item, buf[j]
            yield item

    # ------------------------------------------------------------------ plans and groups
    def groups(self, reader: int, readers: int, counters: dict) -> Iterator[list[Plan]]:
        """Full bucket groups of plans; bad samples are skipped and counted (never decoded)."""
        pending: OrderedDict[tuple, list[Plan]] = OrderedDict()
        for epoch, raw in self.shuffled(self.raw_samples(reader, readers, counters), reader):
            counters["seen"] += 1
            try:
                plan = self.s.plan(raw, epoch)
            except ShardSampleError as err:
                self._skip(counters, err, 1)
                continue
            group = pending.setdefault(plan.group_key, [])
            group.append(plan)
            if len(group) == plan.bucket.batch_size:
                del pending[plan.group_key]
                yield group

    @staticmethod
    def _skip(counters: dict, err: Exception, n: int) -> None:
        counters["skipped"] += n
        if counters["first_skipped"] is None:
            counters["first_skipped"] = str(err)
        log.warning("skipping a bad %s: %s", "shard" if getattr(err, "key", "") is None else "sample", err)

    def __iter__(self) -> Iterator[dict]:
        worker, reader, readers = self._reader()
        skip = self.start_groups.get(worker, 0)
        counters = {"seen": 0, "skipped": 0, "first_skipped": None}
        for index, group in enumerate(self.groups(reader, readers, counters)):
            if index < skip:
                continue  # replayed without decoding: this group was consumed before the resume
            try:
                clips = [decode_plan(p, self.s.num_refs, self.s.default_caption) for p in group]
            except ShardSampleError as err:
                # The whole group is dropped so that its bucket's batch keeps its exact token count.
                self._skip(counters, err, len(group))
                continue
            batch = collate_clips(clips)
            batch.update(
                stream_worker=worker,
                stream_group=index + 1,
                stream_seen=counters["seen"],
                stream_skipped=counters["skipped"],
                stream_first_skipped=counters["first_skipped"] or "",
                bucket=group[0].bucket.name,
            )
            yield batch


def readers_for(num_shards: int, world: int, requested_workers: int) -> int:
    """Dataloader workers per rank: at most as many as leave every reader a shard, and the CPU count.

    Raises:
        ValueError: Fewer shards than ranks.
    """
    if num_shards < world:
        raise ValueError(f"data.shards: {num_shards} shard(s) for {world} ranks; every rank needs at least one")
    return max(0, min(requested_workers, math.floor(num_shards / world), os.cpu_count() or 1))


def worker_init(_: int) -> None:
    """Dataloader workers decode one sample at a time; one thread each avoids oversubscription."""
    torch.set_num_threads(1)
