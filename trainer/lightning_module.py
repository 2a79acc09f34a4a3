"""The LightningModule of every stage: it wires the plain model, the step's objective and the optimiser.

What it holds is :class:`~trainer.model.talking_head.TalkingHeadModel` (``self.model``, built for the stage by
:func:`trainer.stage_model.build_stage_model`); the step's inputs
and loss are pure functions (:mod:`trainer.objectives.step`, :mod:`trainer.objectives.step_loss`);
sequence parallelism and FSDP are one :func:`~trainer.parallel.parallelize.parallelize` step; data position,
RNG state, throughput and the parameter table are callbacks (:mod:`trainer.state_callbacks`).
"""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch

from trainer.checkpoints import (
    MODULE_PREFIX,
    RESUME_KEYS,
    check_resume_compatible,
    upgrade_state_keys,
)
from trainer.config.compose import config_fingerprint, to_container
from trainer.config.schema import TrainConfig
from trainer.data.transforms import batch_to_device
from trainer.model.dit import TalkingHeadDiT
from trainer.model.text_encoder import TextEncoder
from trainer.objectives.step import StepInputs, prepare_step
from trainer.objectives.step_loss import StepLoss, step_loss
from trainer.objectives.timesteps import TimeBinLosses
from trainer.optim import build_optimizer
from trainer.optim.clipping import clip_adamw_grad_norm
from trainer.parallel.mesh import build_mesh, single_process_mesh
from trainer.parallel.parallelize import parallelize
from trainer.parallel.sequence import SequenceParallel
from trainer.stage_model import build_stage_model
from trainer.step_row import StepRow

log = logging.getLogger(__name__)


class TalkingHeadModule(L.LightningModule):
    """Training of the audio-conditioned LTX DiT: the base stage, stage 1 (audio adapter) or stage 2 (+ LoRA).

    Args:
        cfg: The validated training config.
    """

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        self.model, _ = build_stage_model(cfg)  # logs its LoRA report
        # Checkpoints hold the trainable tensors only; frozen parts come back from their sources.
        self.strict_loading = False
        self.logger_run_id: str | None = None
        self.data_layout: dict = {}  # what fixes the sample order (set by the runner); a resume must match it
        self.mesh = single_process_mesh()
        self.sp: SequenceParallel | None = None
        self.step_row = StepRow()
        self.time_bins = TimeBinLosses(cfg.loop.loss_t_bins)
        self.optimizer_bundle = None  # set by configure_optimizers
        self.grad_norm: torch.Tensor | None = None  # of the AdamW groups at the last clipping
        self._parallelized = False
        self._warned_missing_negatives = False

    @property
    def dit(self) -> TalkingHeadDiT:
        """The DiT with its audio adapter (and LoRA)."""
        return self.model.dit

    @property
    def vae(self) -> torch.nn.Module:
        """The frozen VAE."""
        return self.model.vae

    @property
    def text_encoder(self) -> TextEncoder:
        """The frozen caption encoder."""
        return self.model.text_encoder

    def trainable_state_names(self) -> list[str]:
        """Names (in this module's state dict) of the tensors a checkpoint keeps."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def metadata(self) -> dict:
        """What a checkpoint records beside the tensors (all plain containers)."""
        return {
            "config": to_container(self.cfg),
            "config_fingerprint": config_fingerprint(self.cfg, RESUME_KEYS),
            "adapter": self.dit.adapter_config.to_dict() if self.dit.adapter_config else None,
            "lora": to_container(self.cfg.stage.lora) if self.cfg.stage.lora.enabled else None,
            "trainable": self.trainable_state_names(),
            "logger_run_id": self.logger_run_id,
            "data_layout": self.data_layout,
        }

    def setup(self, stage: str) -> None:
        """Build the data x sequence mesh once the process group exists."""
        st = self.cfg.strategy
        if st.kind == "deepspeed" and st.zero_stage == 3:
            # ZeRO-3 partitions the frozen text encoder too, so each of its forwards gathers weights from
            # every rank: all ranks must run it every step. The caption cache would skip the forward on
            # ranks whose captions are cached and leave the others waiting in the gather.
            self.text_encoder.cache_size = 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.mesh = build_mesh(self.cfg.parallel.size)

    def configure_model(self) -> None:
        """Apply the run's parallelism to the model once (:func:`trainer.parallel.parallelize.parallelize`)."""
        if self._parallelized:
            return
        fsdp_mesh = self.device_mesh["data_parallel"] if self.cfg.strategy.kind == "fsdp" else None
        self.sp = parallelize(self.model, self.mesh, self.cfg, fsdp_mesh)
        self._parallelized = True
        if self.sp is not None and self.global_rank == 0:
            log.info(
                "sequence parallel: %d data-parallel group(s) of %d ranks (%s)",
                self.mesh.dp_size,
                self.mesh.sp_size,
                self.cfg.parallel.mode,
            )

    def on_fit_start(self) -> None:
        """On GPUs the frozen VAE and text encoder run in bf16 (they are never trained)."""
        if self.device.type == "cuda":
            self.vae.to(dtype=torch.bfloat16)
            self.text_encoder.to(dtype=torch.bfloat16)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable tensors and add the talkdit metadata (callbacks have added their state)."""
        keep = set(self.trainable_state_names())
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint.setdefault("talkdit", {}).update(self.metadata())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model, stage or size before any tensor is copied.

        DeepSpeed hands over only its client state (the tensors stay with DeepSpeed); the runner has
        checked those, consolidated, before training started.
        """
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = upgrade_state_keys(checkpoint["state_dict"])
            check_resume_compatible(self, checkpoint, source="checkpoint")
        self.logger_run_id = checkpoint["talkdit"].get("logger_run_id")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        """Muon for hidden 2-D matrices of trainable modules, AdamW for the rest (see :mod:`trainer.optim`)."""
        if self.cfg.strategy.kind == "deepspeed":
            from trainer.optim.zero import build_zero_optimizer

            bundle = build_zero_optimizer(self.dit.transformer, self.cfg.optim)
        else:
            bundle = build_optimizer(self.dit.transformer, self.cfg.optim)
        self.optimizer_bundle = bundle  # its parameter table goes to the run dir (state_callbacks.ParameterTable)
        return bundle.lightning_config()

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip AdamW gradients only; Muon's orthogonalised update is never clipped."""
        if self.cfg.optim.grad_clip_norm is None:
            return
        if self.cfg.strategy.kind == "deepspeed":
            from trainer.optim.zero import clip_zero_adamw_grad_norm

            norm = clip_zero_adamw_grad_norm(self.dit.transformer, optimizer, self.cfg.optim.grad_clip_norm)
        else:
            norm = clip_adamw_grad_norm(optimizer, self.cfg.optim.grad_clip_norm)
        # FSDP gradients are DTensors: their norm is one too.
        self.grad_norm = (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).detach()

    # ------------------------------------------------------------------ the step
    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        """Move the batch's tensors to ``device`` (:func:`trainer.data.transforms.batch_to_device`)."""
        return batch_to_device(batch, device)

    def step_generator(self, micro_batch: int = 0) -> torch.Generator:
        """RNG of this micro-batch: a function of (seed, step, data-parallel rank, micro-batch) only.

        Runs repeat exactly. Under gradient accumulation each micro-batch of an optimizer step draws its own
        noise, timesteps and conditions; micro-batch 0 keeps the seed runs without accumulation have always had.
        """
        # Every rank of a sequence group draws the same noise, timesteps and conditions.
        entropy = [self.cfg.seed, self.global_step, self.mesh.dp_rank] + ([micro_batch] if micro_batch else [])
        seed = np.random.SeedSequence(entropy).generate_state(1)[0]
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        return gen

    def prepare_step(self, batch: dict, gen: torch.Generator) -> StepInputs:
        """The batch's DiT inputs (:func:`trainer.objectives.step.prepare_step`)."""
        return prepare_step(self.model, self.cfg, batch, gen)

    def compute_loss(self, inputs: StepInputs) -> StepLoss:
        """The step's loss on this rank's mesh (:func:`trainer.objectives.step_loss.step_loss`)."""
        out = step_loss(self.dit, inputs, self.cfg.objective.contrastive_lambda, self.mesh, self.sp)
        plan = out.negatives
        if plan is not None and plan.missing and not self._warned_missing_negatives:
            self._warned_missing_negatives = True
            if self.global_rank == 0:  # the plan is the same on every rank
                log.warning(
                    "step %d: %d sample(s) of batch size 1 trained without the contrastive term (no other "
                    "data-parallel rank held a sample of the same latent grid); train/contrastive_missing "
                    "counts them per step",
                    self.global_step,
                    plan.missing,
                )
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss; a logged step's metrics go into :attr:`step_row`."""
        logging_step = self.step_row.open(self.trainer, batch_idx)
        inputs = self.prepare_step(batch, self.step_generator(batch_idx % self.trainer.accumulate_grad_batches))
        out = self.compute_loss(inputs)
        self.time_bins.add(out.per_sample, inputs.flow_time)
        bsz = inputs.tokens.shape[0]
        self.log("train/loss", out.metrics["loss"], prog_bar=True, logger=False, on_step=True, batch_size=bsz)
        if logging_step:
            metrics = {k: v for k, v in out.metrics.items() if k != "loss"}
            metrics["identity_refs"] = float(inputs.flags.identity)
            metrics["frame_refs"] = float(inputs.flags.frame_refs != "none")
            metrics.update(self.time_bins.pop())
            self.step_row.add({"train/loss": out.metrics["loss"], **{f"train/{k}": v for k, v in metrics.items()}})
        return out.loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Write the step's row (callbacks have added theirs)."""
        self.step_row.write(self.trainer)


__all__ = ["MODULE_PREFIX", "TalkingHeadModule"]
