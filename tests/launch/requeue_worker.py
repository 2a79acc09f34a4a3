"""Two-rank DDP (gloo) toy training with :class:`trainer.requeue.RequeueOnSignal`; run as a script.

``python tests/launch/requeue_worker.py <out_dir>``: Lightning starts rank 1 as a copy of this command.
Each rank writes ``pid.<rank>`` at its ``RUNNING_AT``-th training step (well inside the training loop) and
``stopped.<rank>.json`` when fit returns. Like the
talkdit module, saving a checkpoint gathers every rank's data position (a collective), which is what
makes a checkpoint taken inside a signal handler hang.
"""

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, IterableDataset

from trainer.atomic import atomic_write_text
from trainer.requeue import RequeueOnSignal

OUT = Path(sys.argv[1])
RUNNING_AT = 20


class Forever(IterableDataset):
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        while True:
            yield torch.randn(64, generator=g)


class Toy(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 64))
        self.position = 0  # batches this rank consumed

    def training_step(self, batch, batch_idx):
        self.position += 1
        if self.position == RUNNING_AT:
            # atomic: the test reads the pid as soon as the file exists
            atomic_write_text(OUT / f"pid.{self.global_rank}", str(os.getpid()))
        return (self.net(batch) - batch).pow(2).mean()

    def on_save_checkpoint(self, checkpoint):
        every = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(every, self.position)
        checkpoint["positions"] = every

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


if __name__ == "__main__":
    torch.set_num_threads(1)
    callback = RequeueOnSignal(OUT)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=DDPStrategy(process_group_backend="gloo"),
        max_steps=1_000_000,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(OUT),
    )
    module = Toy()
    trainer.fit(module, DataLoader(Forever(), batch_size=8))
    result = {"global_step": trainer.global_step, "saved_step": callback.saved_step, "position": module.position}
    # atomic: the test reads it as soon as it exists
    atomic_write_text(OUT / f"stopped.{trainer.global_rank}.json", json.dumps(result))
