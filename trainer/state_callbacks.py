"""Callbacks for what a training run carries besides weights: data position, RNG state, throughput.

The first two keep their own state, write it into the checkpoint's ``talkdit`` metadata and restore it on
resume; every rank's value is gathered, because only rank 0 writes the checkpoint. With the parameter
table they are added to every run by the runner (:func:`training_state_callbacks`); the training module
knows none of them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from trainer.atomic import atomic_write_text
from trainer.config.schema import DataConfig
from trainer.data.schema import DataError
from trainer.rng_state import capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)


def gather_by_rank(trainer: L.Trainer, mine: Any) -> dict[str, Any]:
    """Every rank's ``mine`` as ``{str(rank): value}`` (string keys: checkpoints are JSON-like)."""
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        every: list = [None] * trainer.world_size
        torch.distributed.all_gather_object(every, mine)
        return {str(r): value for r, value in enumerate(every)}
    return {str(trainer.global_rank): mine}


def talkdit_meta(checkpoint: dict) -> dict:
    """The checkpoint's talkdit metadata (created when absent: callbacks save before the module does)."""
    return checkpoint.setdefault("talkdit", {})


class DataPosition(Callback):
    """Where each dataloader worker's stream stands, and a stop when too many samples were bad.

    The position (``{worker: groups consumed}`` per rank) goes into the checkpoint; the runner hands the
    saved one to the data module of a resumed run, so its streams continue there.

    Args:
        data: The data config (``max_skipped_fraction``, ``min_samples_before_skip_check``).
    """

    def __init__(self, data: DataConfig):
        self.data = data
        self.position: dict[int, int] = {}
        self._counts: dict[int, tuple[int, int, str]] = {}  # worker → (seen, skipped, first skipped)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, batch_idx: int):
        """Record the position the batch advances to.

        Raises:
            DataError: More than ``data.max_skipped_fraction`` of the samples seen were skipped.
        """
        if "stream_worker" not in batch:
            return
        worker = int(batch["stream_worker"])
        self.position[worker] = int(batch["stream_group"])
        self._counts[worker] = (
            int(batch["stream_seen"]),
            int(batch["stream_skipped"]),
            str(batch["stream_first_skipped"]),
        )
        seen, skipped = self.seen_and_skipped()
        d = self.data
        if skipped and seen >= d.min_samples_before_skip_check and skipped / seen > d.max_skipped_fraction:
            first = next(c[2] for c in self._counts.values() if c[2])
            raise DataError(
                f"{skipped} of {seen} samples were bad ({skipped / seen:.1%} > data.max_skipped_fraction="
                f"{d.max_skipped_fraction}); the first: {first}"
            )

    def seen_and_skipped(self) -> tuple[int, int]:
        """Samples this rank's workers have seen and skipped so far."""
        return sum(c[0] for c in self._counts.values()), sum(c[1] for c in self._counts.values())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Log the skipped samples (count and share) on logged steps."""
        if self._counts:
            seen, skipped = self.seen_and_skipped()
            pl_module.step_row.add(
                {"data/skipped_samples": float(skipped), "data/skipped_fraction": skipped / max(seen, 1)}
            )

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """Every rank's position ``{rank: {worker: groups}}``."""
        talkdit_meta(checkpoint)["data_position"] = gather_by_rank(
            trainer, {str(k): v for k, v in self.position.items()}
        )

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """This rank's saved position (the next save keeps it until the stream moves on)."""
        saved = checkpoint.get("talkdit", {}).get("data_position", {}).get(str(trainer.global_rank), {})
        self.position = {int(k): int(v) for k, v in saved.items()}


class RNGState(Callback):
    """Each rank's global RNG state (:mod:`trainer.rng_state`), so that dropout draws resume exactly.

    The saved state is restored right before the first resumed step draws from it, not when the checkpoint
    is read: creating the data loader's iterator draws a seed from the global RNG, which the uninterrupted
    run drew long before the checkpoint.
    """

    def __init__(self):
        self._pending: dict | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """Every rank's state ``{rank: state}``."""
        talkdit_meta(checkpoint)["rng_state"] = gather_by_rank(trainer, capture_rng_state())

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """Keep this rank's state for the first batch; warn when the checkpoint has none for it."""
        states = checkpoint.get("talkdit", {}).get("rng_state")
        self._pending = (states or {}).get(str(trainer.global_rank))
        if self._pending is None:
            log.warning(
                "the checkpoint holds no RNG state for rank %d%s: dropout draws restart from the seed, so the "
                "run will not repeat an uninterrupted one exactly",
                trainer.global_rank,
                "" if states is None else f" (it was written by {len(states)} rank(s))",
            )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        """Restore the saved state once, before the first resumed step."""
        if self._pending is not None:
            restore_rng_state(self._pending)
            self._pending = None


class Throughput(Callback):
    """Step time and samples/s of the whole world (averaged since the last logged row), and the AdamW grad norm.

    Speeds are measured from the end of the first step, so start-up does not count.
    """

    def __init__(self):
        self._start: float | None = None
        self._steps = 0
        self._samples = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: dict, batch_idx: int) -> None:
        """Add the window's speeds to a logged step's row (and to the progress bar), then start a new window."""
        now = time.perf_counter()
        if self._start is None:
            self._start, self._steps, self._samples = now, 0, 0
            return
        self._steps += 1
        self._samples += len(batch["keys"])
        if not pl_module.step_row.logging:
            return
        elapsed = now - self._start
        speed = {
            "train/step_time": elapsed / self._steps,
            "train/samples_per_s": self._samples * trainer.world_size / elapsed,
        }
        pl_module.log_dict(speed, prog_bar=True, logger=False, on_step=True, on_epoch=False, batch_size=1)
        pl_module.step_row.add(speed)
        if pl_module.grad_norm is not None:
            pl_module.step_row.add({"train/grad_norm_adamw": pl_module.grad_norm})
        self._start, self._steps, self._samples = now, 0, 0


class ParameterTable(Callback):
    """Which optimiser and learning rate each trainable parameter got, written once training starts (rank 0).

    The groups go to the log, every parameter's row (thousands with LoRA at 13B) to
    ``<run dir>/parameters.txt``.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the table of the module's optimiser bundle."""
        bundle = getattr(pl_module, "optimizer_bundle", None)
        if bundle is None or not trainer.is_global_zero:
            return
        table = bundle.table()
        path = Path(trainer.default_root_dir) / "parameters.txt"
        atomic_write_text(path, table + "\n")
        log.info("parameter groups (every parameter in %s):\n%s", path, table.split("\n\n")[0])


def training_state_callbacks(data: DataConfig) -> list[Callback]:
    """The callbacks every training run has: data position, RNG state, throughput, the parameter table."""
    return [DataPosition(data), RNGState(), Throughput(), ParameterTable()]
