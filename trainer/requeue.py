"""Checkpoint-and-requeue on SLURM's warning signal, at a step boundary that every rank agrees on.

Lightning's own SLURM auto-requeue saves the checkpoint inside the signal handler. A Python signal
handler runs wherever the main thread happens to be, so under DDP one rank may start the checkpoint's
collectives (barrier, gathering the data position) while another is still inside the step's gradient
all-reduce: the collectives pair up wrongly and the job hangs until its time limit, with no checkpoint
and no requeue. On a 2-rank gloo job this happened in 2 of 10 USR1 trials (see the launch tests).

:class:`RequeueOnSignal` makes the handler only set a flag. After every ``every_n_steps``-th optimizer
step all ranks combine their flags with one all-reduce; when any rank was signalled, all of them save
the checkpoint at that same step boundary (so the saved data position and weights belong to one step),
global rank 0 leaves a request file in the run directory and training stops. The batch script that
``launch.slurm_scripts`` writes requeues the job when it finds the request after ``srun`` returned; the rerun
continues from the checkpoint with ``resume=auto``.

Wiring (in the trainer, under SLURM): ``SLURMEnvironment(auto_requeue=False)`` as a Trainer plugin and
``RequeueOnSignal(run_dir)`` as a callback.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from trainer.atomic import atomic_write_text
from trainer.run_dir import CHECKPOINT_DIR, REQUEUE_REQUEST, save_last_checkpoint

log = logging.getLogger("talkdit.requeue")


class RequeueOnSignal(Callback):
    """Save a checkpoint and ask for a requeue when SLURM signals the job (all ranks in step).

    Args:
        run_dir: The run directory (the checkpoint goes to ``checkpoints/last.ckpt``, the request next to it).
        signum: The warning signal (``--signal=USR1@<seconds>`` in the sbatch script).
        every_n_steps: How often the ranks compare their flags (one scalar all-reduce each time; on GPUs it
            also waits for the step's kernels, so a few steps apart keeps the pipeline full).
    """

    def __init__(self, run_dir: str | os.PathLike, signum: int = signal.SIGUSR1, every_n_steps: int = 1):
        self.run_dir = Path(run_dir)
        self.signum = signum
        self.every_n_steps = max(1, every_n_steps)
        self.requested = False
        self.saved_step: int | None = None
        self._previous = None

    def _on_signal(self, signum, frame) -> None:
        # Only a flag: anything collective here could run in the middle of another collective.
        self.requested = True

    def on_fit_start(self, trainer, pl_module) -> None:
        """Install the signal handler (Lightning runs fit in the main thread)."""
        self._previous = signal.signal(self.signum, self._on_signal)

    def on_fit_end(self, trainer, pl_module) -> None:
        """Restore the handler that was there before."""
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def _any_rank_requested(self, trainer, pl_module) -> bool:
        flag = torch.tensor([1.0 if self.requested else 0.0], device=pl_module.device)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """At a step boundary: if any rank was signalled, checkpoint on all ranks, request a requeue, stop."""
        if self.saved_step is not None or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # already saved, or inside a gradient accumulation window (not a step boundary)
        if trainer.global_step % self.every_n_steps:
            return
        if not self._any_rank_requested(trainer, pl_module):
            return
        path = self.run_dir / CHECKPOINT_DIR / "last.ckpt"
        save_last_checkpoint(trainer, path)
        self.saved_step = trainer.global_step
        if trainer.is_global_zero:
            job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "")
            task = os.environ.get("SLURM_ARRAY_TASK_ID")
            atomic_write_text(self.run_dir / REQUEUE_REQUEST, f"{job}_{task}\n" if task else f"{job}\n")
            log.info("requeue signal: saved %s at step %d; the job will be requeued", path, trainer.global_step)
        trainer.should_stop = True
