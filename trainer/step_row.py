"""One row of training metrics per logged optimizer step, written to every logger through public Lightning API."""

from __future__ import annotations

import lightning as L
import torch


class StepRow:
    """The metrics of one optimizer step, written as one row at the end of the batch.

    The training step opens the row; it and the callbacks fill it; the module writes it. A row is written
    every ``log_every_n_steps``-th optimizer step (Lightning's own rule) and also at the first and the last
    step, which Lightning's rule skips (a 3-step run would otherwise log nothing).
    """

    def __init__(self):
        self.step = 0
        self.logging = False
        self.values: dict[str, float | torch.Tensor] = {}

    def open(self, trainer: L.Trainer, batch_idx: int) -> bool:
        """Start the batch's row; returns whether this batch's step is logged.

        Args:
            trainer: The running trainer (its ``global_step`` is the count of optimizer steps before this one).
            batch_idx: The batch's index (under gradient accumulation only the stepping batch logs).
        """
        step, every = trainer.global_step, trainer.log_every_n_steps
        stepping = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        last = trainer.max_steps > 0 and step + 1 >= trainer.max_steps
        self.step = step
        self.logging = stepping and every > 0 and ((step + 1) % every == 0 or step == 0 or last)
        self.values = {}
        return self.logging

    def add(self, values: dict[str, float | torch.Tensor]) -> None:
        """Add values to the row when the step is logged (tensors are read when the row is written)."""
        if self.logging:
            self.values.update(values)

    def write(self, trainer: L.Trainer) -> None:
        """Write the row to every logger (rank 0 only, as Lightning's loggers do) and close it."""
        if self.values:
            row = {k: float(v) for k, v in self.values.items()}
            row["epoch"] = float(trainer.current_epoch)
            for logger in trainer.loggers:
                logger.log_metrics(row, step=self.step)
                logger.save()
        self.values = {}
        self.logging = False
