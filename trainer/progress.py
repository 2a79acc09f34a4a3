"""Training progress for logs that are files: one line every N steps or M seconds.

A progress bar redraws itself with carriage returns; redirected to a file it becomes one ever-growing line
(about 280 bytes a step, megabytes for a long run). When stdout is not a terminal the trainer uses this
instead: a line with the step, the loss, the step time, samples per second and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from lightning.pytorch.callbacks import Callback


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour)."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LineProgress(Callback):
    """Prints a progress line at the first and the last step, and every N steps or M seconds in between.

    A line is due at every multiple of ``every_n_steps``, and whenever ``every_s`` seconds passed since the
    last one (global rank 0 only). Step time
    and samples/s are averaged since the previous line; the ETA extrapolates that step time.

    Args:
        every_n_steps: Optimizer steps between lines.
        every_s: Seconds between lines (a slow run still reports).
        stream: Where lines go (stdout).
    """

    def __init__(self, every_n_steps: int, every_s: float, stream: TextIO | None = None):
        self.every_n_steps = every_n_steps
        self.every_s = every_s
        self.stream = stream
        self._last_time = 0.0
        self._last_step = 0
        self._samples = 0

    def on_train_start(self, trainer, pl_module) -> None:
        """Start the clock (at the step a resumed run starts from)."""
        self._last_time = time.perf_counter()
        self._last_step = trainer.global_step
        self._samples = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Count the batch's samples; print a line when one is due."""
        mesh = getattr(pl_module, "mesh", None)
        # Ranks of a sequence-parallel group share their samples: count each data-parallel replica once.
        replicas = mesh.dp_size if mesh is not None else trainer.world_size
        self._samples += len(batch["keys"]) * replicas if isinstance(batch, dict) and "keys" in batch else 0
        if not trainer.is_global_zero or (batch_idx + 1) % trainer.accumulate_grad_batches:  # mid-accumulation
            return
        step, now = trainer.global_step, time.perf_counter()
        last = trainer.max_steps > 0 and step >= trainer.max_steps
        due = step % self.every_n_steps == 0 or now - self._last_time >= self.every_s
        if not (step == 1 or last or due) or step == self._last_step:
            return
        elapsed = max(now - self._last_time, 1e-9)
        step_time = elapsed / (step - self._last_step)
        loss = trainer.callback_metrics.get("train/loss")
        parts = [f"step {step}/{trainer.max_steps}" if trainer.max_steps > 0 else f"step {step}"]
        parts.append(f"loss {float(loss):.4f}" if loss is not None else "loss -")
        parts.append(f"{step_time:.3f} s/step")
        parts.append(f"{self._samples / elapsed:.2f} samples/s")
        if trainer.max_steps > 0:
            parts.append(f"eta {format_duration((trainer.max_steps - step) * step_time)}")
        print(" | ".join(parts), file=self.stream or sys.stdout, flush=True)
        self._last_time, self._last_step, self._samples = now, step, 0
