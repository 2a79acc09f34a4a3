"""Lightning strategies from ``StrategyConfig``: DDP, FSDP2 and DeepSpeed ZeRO (with its generated JSON).

DeepSpeed is driven entirely by :func:`deepspeed_config`: the JSON has no ``optimizer``, ``scheduler`` or
``gradient_clipping`` entry, so DeepSpeed never replaces talkdit's two learning rates, their schedule or
its AdamW-only clipping (see :mod:`trainer.optim.zero`). :class:`TalkditDeepSpeedStrategy` adds what
Lightning's strategy lacks: CPU runs through DeepSpeed's CPU accelerator (gloo), and checkpoint folders
written next to their destination and renamed into place, so a killed job never leaves a half-written
``last.ckpt`` behind.

FSDP2 (:class:`TalkditFSDPStrategy`) shards every DiT block, the audio projection and the DiT's remaining
weights over all ranks with ``fully_shard``; weights stay 2-D ``DTensor``s, so torch's Muon orthogonalises
each matrix whole. Its checkpoints are ordinary single files with the full trainable tensors and optimizer
state, like DDP's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, ModelParallelStrategy, Strategy

from trainer.config.schema import StrategyConfig

DEEPSPEED_TAG = "checkpoint"  # the one tag every talkdit DeepSpeed checkpoint folder holds
DEEPSPEED_CONFIG_FILE = "deepspeed_config.json"


def deepspeed_config(st: StrategyConfig) -> dict:
    """The DeepSpeed JSON for a strategy config.

    Returns:
        A DeepSpeed config dict: ZeRO stage, buckets, overlap, offload switches and bf16; never an
        optimizer, scheduler or gradient clipping (talkdit owns those).
    """
    zero: dict = {
        "stage": st.zero_stage,
        "overlap_comm": st.overlap_comm,
        "contiguous_gradients": True,
        "reduce_bucket_size": int(st.reduce_bucket_size),
    }
    if st.zero_stage == 2:
        zero["allgather_bucket_size"] = int(st.allgather_bucket_size)
        zero["reduce_scatter"] = True
    else:
        # DeepSpeed's ZeRO-3 Muon gathers whole gradients itself and refuses reduce-scatter.
        zero["reduce_scatter"] = False
    if st.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": st.accelerator != "cpu"}
    if st.offload_parameters:
        zero["offload_param"] = {"device": "cpu", "pin_memory": st.accelerator != "cpu"}
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": st.precision.startswith("bf16")},
        # 0 disables DeepSpeed's clipping: it would scale Muon's orthogonalised update with the rest.
        "gradient_clipping": 0.0,
        # Batches are token budgets, not a fixed sample count; DeepSpeed only uses this for logging.
        "train_micro_batch_size_per_gpu": 1,
        # The optimizer is talkdit's (DeepSpeed's Muon-with-AdamW class with talkdit's routing).
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


class TalkditDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's DeepSpeed strategy, also on CPU, with checkpoint folders renamed into place.

    Checkpoints hold only the trainable tensors (``exclude_frozen_parameters``); the frozen backbone
    comes back from its source, as with every talkdit checkpoint.
    """

    def __init__(self, st: StrategyConfig):
        if st.accelerator == "cpu":
            # DeepSpeed picks its accelerator when first imported; on CPU it then talks over gloo.
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        super().__init__(
            config=deepspeed_config(st),
            process_group_backend=st.process_group_backend,
            exclude_frozen_parameters=True,
        )
        self._cpu = st.accelerator == "cpu"

    def setup_environment(self) -> None:
        """Skip Lightning's CUDA-only check on CPU; otherwise unchanged."""
        if not self._cpu:
            super().setup_environment()
            return
        # DDPStrategy.setup_environment: accelerator set-up, then this strategy's setup_distributed.
        super(DeepSpeedStrategy, self).setup_environment()

    def setup_distributed(self) -> None:
        """Start DeepSpeed's process group (CPU devices have no index to validate)."""
        if not self._cpu:
            super().setup_distributed()
            return
        from lightning.fabric.utilities.seed import reset_seed

        reset_seed()
        self.set_world_ranks()
        _skip_shm_comm_build()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):
        """``deepspeed.initialize`` with a device rank that also exists on CPU."""
        import deepspeed

        index = self.root_device.index
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank if index is None else index),
            config=self.config,
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer

    def save_checkpoint(self, checkpoint: dict, filepath, storage_options=None) -> None:
        """Write the checkpoint folder beside ``filepath`` and rename it into place once every rank is done."""
        if storage_options is not None:
            raise TypeError("TalkditDeepSpeedStrategy.save_checkpoint takes no storage_options")
        final = Path(self.broadcast(str(filepath)))
        partial = final.with_name(final.name + ".partial")
        if self.is_global_zero and partial.exists():
            shutil.rmtree(partial)  # left by a job killed while saving
        self.barrier("talkdit_ds_save_start")
        state = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states")}
        self.deepspeed_engine.save_checkpoint(
            str(partial), client_state=state, tag=DEEPSPEED_TAG, exclude_frozen_parameters=True
        )
        self.barrier("talkdit_ds_save_written")
        if self.is_global_zero:
            old = final.with_name(final.name + ".old")
            if final.exists():
                final.rename(old)
            partial.rename(final)
            if old.exists():
                shutil.rmtree(old)
        self.barrier("talkdit_ds_save_done")

    def remove_checkpoint(self, filepath) -> None:
        """Delete a checkpoint folder (rank 0)."""
        if self.is_global_zero:
            shutil.rmtree(filepath, ignore_errors=True)


def _full(value):
    """A ``DTensor`` gathered to a plain CPU tensor; containers walked; anything else unchanged."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        return value.full_tensor().cpu()
    if isinstance(value, dict):
        return {k: _full(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_full(v) for v in value)
    return value


class TalkditFSDPStrategy(ModelParallelStrategy):
    """FSDP2 over all ranks with single-file checkpoints of the trainable tensors and optimizer state.

    Lightning's own full-state path gathers the whole model (frozen backbone included) and converts the
    optimizer state through ``get_optimizer_state_dict``, which only knows plain torch optimizers; this
    gathers the trainable ``DTensor``s and the ``MuonAdamW`` state (every rank takes part in the gathers,
    rank 0 writes) and shards them back on load.
    """

    def __init__(self, st: StrategyConfig):
        super().__init__(
            data_parallel_size=st.devices * st.num_nodes,
            tensor_parallel_size=1,
            save_distributed_checkpoint=False,
            process_group_backend=st.process_group_backend,
        )

    def lightning_module_state_dict(self) -> dict:
        """The trainable tensors, gathered (the frozen ones come back from their sources)."""
        module = self.lightning_module
        return {n: _full(p.detach()) for n, p in module.named_parameters() if p.requires_grad}

    def optimizer_state(self, optimizer) -> dict:
        """The optimizer's own state dict with every ``DTensor`` gathered."""
        inner = getattr(optimizer, "_optimizer", optimizer)
        return _full(inner.state_dict())

    def save_checkpoint(self, checkpoint: dict, filepath, storage_options=None) -> None:
        """Rank 0 writes the gathered checkpoint through the (atomic) checkpoint I/O."""
        Strategy.save_checkpoint(self, checkpoint, filepath, storage_options)

    def load_checkpoint(self, checkpoint_path, weights_only=None) -> dict:
        """Read the file on every rank and shard its tensors and optimizer state into place."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        checkpoint = torch.load(self.broadcast(str(checkpoint_path)), map_location="cpu", weights_only=True)

        def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            if isinstance(like, DTensor):
                return distribute_tensor(full.to(like.device, like.dtype), like.device_mesh, like.placements)
            return full.to(like.device)

        params = dict(self.lightning_module.named_parameters())
        with torch.no_grad():
            for name, full in checkpoint["state_dict"].items():
                if name in params:
                    params[name].copy_(shard_like(full, params[name]))
        if self.lightning_module.trainer.state.fn == "fit" and checkpoint.get("optimizer_states"):
            optimizer = getattr(self.optimizers[0], "_optimizer", self.optimizers[0])
            saved = checkpoint["optimizer_states"][0]
            # MuonAdamW nests one torch state dict per side; their per-parameter tensors (momentum, Adam
            # moments) are sharded like the parameter they belong to (matched by torch's parameter index).
            for kind, inner in (("muon", optimizer.muon), ("adamw", optimizer.adamw)):
                if inner is None or saved.get(kind) is None:
                    continue
                order = [p for group in inner.param_groups for p in group["params"]]
                for index, entry in saved[kind]["state"].items():
                    param = order[int(index)]
                    for key, value in entry.items():
                        if isinstance(value, torch.Tensor) and value.shape == param.shape:
                            entry[key] = shard_like(value, param)
            optimizer.load_state_dict(saved)
        return checkpoint


def build_strategy(st: StrategyConfig) -> str | Strategy:
    """The Lightning strategy for a config (``"auto"`` for a single-process DDP run)."""
    if st.kind == "deepspeed":
        return TalkditDeepSpeedStrategy(st)
    if st.kind == "fsdp":
        return TalkditFSDPStrategy(st)
    if st.devices * st.num_nodes == 1:
        return "auto"
    return DDPStrategy(process_group_backend=st.process_group_backend, find_unused_parameters=st.find_unused_parameters)


def write_deepspeed_config(st: StrategyConfig, run_dir: Path) -> Path | None:
    """Save the generated DeepSpeed JSON in the run directory (DeepSpeed runs only)."""
    if st.kind != "deepspeed":
        return None
    from trainer.atomic import atomic_write_text

    path = run_dir / DEEPSPEED_CONFIG_FILE
    atomic_write_text(path, json.dumps(deepspeed_config(st), indent=2) + "\n")
    return path


def _skip_shm_comm_build() -> None:
    """Keep DeepSpeed from JIT-compiling its shared-memory comm op on CPU.

    The op only speeds up DeepSpeed's inference all-reduce, which training never calls; gloo carries
    every collective. Compiling it costs a fresh machine a C++ build on the first run, and a process
    killed mid-build (a preempted job, a resume test) leaves torch's build lock behind, after which
    every later CPU DeepSpeed run waits on that lock forever.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
