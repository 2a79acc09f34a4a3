"""The LightningModule of both stages: batch → conditions → masked flow matching → Muon/AdamW step."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from trainer.atomic import atomic_write_text
from trainer.checkpoints import MODULE_PREFIX, check_adapter_config, read_adapter_source
from trainer.config.compose import config_fingerprint, to_container
from trainer.config.schema import TrainConfig
from trainer.data.schema import DataError
from trainer.model.audio_adapter import adapter_parameter_names, load_audio_adapter_state_dict
from trainer.model.dit import AudioInputs, TalkingHeadDiT
from trainer.model.dit_inputs import assemble_dit_inputs, batch_audio_windows, identity_references
from trainer.model.lora import LoRAReport, add_lora
from trainer.model.masks import lower_face_token_mask
from trainer.model.sequence import patchify
from trainer.model.text_encoder import TextEncoder
from trainer.model.vae import encode_posterior, load_vae, normalize_latents, sample_posterior
from trainer.objectives.conditions import ConditionFlags, sample_conditions
from trainer.objectives.contrastive import contrastive_sq_error
from trainer.objectives.flow_matching import noise_mask, noise_tokens, velocity_target
from trainer.objectives.immiscible import knn_noise
from trainer.objectives.timesteps import sample_timesteps, time_bin_label, time_bins
from trainer.optim import build_optimizer
from trainer.optim.clipping import clip_adamw_grad_norm
from trainer.parallel.mesh import build_mesh, single_process_mesh
from trainer.parallel.negatives import NegativePlan, exchange_negatives
from trainer.parallel.sequence import SequenceParallel, parallelize
from trainer.rng_state import capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)

# Config sections that must not change between a checkpoint and the run resuming from it.
RESUME_KEYS = ("model", "audio", "stage")
# Within them, where files live or how much is cached does not change what the weights mean.
RESUME_IGNORED_SUFFIXES = (".path", ".adapter_init", ".cache_size", ".device", ".batch_chunks")


@dataclass
class StepInputs:
    """Everything the DiT reads in one training step, plus what the loss needs.

    Attributes:
        tokens: DiT input ``[B, N_ref + N, C]``.
        timestep: Per-token flow time ``[B, N_ref + N]``.
        coords: RoPE coordinates ``[B, 3, N_ref + N]``.
        audio: Audio inputs (``None`` for a DiT without audio adapter).
        text: Text embeddings ``[B, L, C_text]``.
        text_mask: ``[B, L]``.
        target: ``ε − x0`` of the video tokens ``[B, N, C]``.
        mask: ``M`` of the video tokens ``[B, N]``.
        num_ref: Reference tokens at the head of the sequence.
        flags: Condition flags of the step.
        grid: Latent grid ``(T, H, W)`` of the video tokens (``N = T·H·W``).
        flow_time: Flow time of each sample ``[B]`` (the masked tokens' timestep).
    """

    tokens: torch.Tensor
    timestep: torch.Tensor
    coords: torch.Tensor
    audio: AudioInputs | None
    text: torch.Tensor
    text_mask: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    num_ref: int
    flags: ConditionFlags
    grid: tuple[int, int, int]
    flow_time: torch.Tensor


class TalkingHeadModule(L.LightningModule):
    """Stage-1 (audio adapter) or stage-2 (adapter + LoRA) training of the audio-conditioned LTX DiT.

    Args:
        cfg: The validated training config.
    """

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        self.dit = TalkingHeadDiT.from_config(cfg.model, cfg.audio, with_adapter=cfg.stage.audio_adapter)
        self.vae = load_vae(cfg.model.vae)
        if self.vae.config.latent_channels != cfg.model.transformer.arch.in_channels:
            raise ValueError(
                f"the VAE has {self.vae.config.latent_channels} latent channels, model.transformer.arch.in_channels "
                f"is {cfg.model.transformer.arch.in_channels}: the DiT and the VAE must come from the same model"
            )
        self.text_encoder = TextEncoder(cfg.model.text_encoder)
        if self.text_encoder.hidden_size != cfg.model.transformer.arch.caption_channels:
            raise ValueError(
                f"text encoder width {self.text_encoder.hidden_size} != model.transformer.arch.caption_channels "
                f"{cfg.model.transformer.arch.caption_channels}"
            )
        self.lora_report: LoRAReport | None = None
        self._setup_stage()
        # Checkpoints hold the trainable tensors only; frozen parts come back from their sources.
        self.strict_loading = False
        self.logger_run_id: str | None = None
        self._window_start: float | None = None
        self._edge_row: dict[str, float] = {}  # metrics of a first/last step that Lightning does not log
        self._window_steps = 0
        self._window_samples = 0
        # Groups each local dataloader worker delivered that training consumed: the data position.
        self.data_position: dict[int, int] = {}
        self.data_layout: dict = {}  # what fixes the sample order (set by the runner); a resume must match it
        self.mesh = single_process_mesh()
        self.sp: SequenceParallel | None = None
        self._stream_counts: dict[int, tuple[int, int, str]] = {}
        self._grad_norm: torch.Tensor | None = None
        self._sharded = False
        self._warned_missing_negatives = False
        # Per flow-time bin since the last logged row: (sum of per-sample flow-matching losses, samples).
        self._t_window: torch.Tensor | None = None
        self._pending_rng_state: dict | None = None  # this rank's RNG state from a checkpoint, set at the first batch

    # ------------------------------------------------------------------ set-up
    def _setup_stage(self) -> None:
        stage = self.cfg.stage
        transformer = self.dit.transformer
        # Full fine-tuning (the base stage) trains every DiT weight; other stages start from a frozen DiT.
        transformer.requires_grad_(stage.train_transformer)
        if stage.adapter_init is not None:
            tensors, saved_cfg, source = read_adapter_source(stage.adapter_init)
            check_adapter_config(saved_cfg, self.dit.adapter_config, source)
            load_audio_adapter_state_dict(transformer, tensors, source)
            log.info("audio adapter initialised from %s", source)
        if stage.lora.enabled:
            # peft freezes everything but LoRA when it injects adapters, so this comes first.
            self.lora_report = add_lora(transformer, stage.lora)
            log.info("%s", self.lora_report.format())
        if stage.train_adapter:
            names = set(adapter_parameter_names(transformer))
            for n, p in transformer.named_parameters():
                if n in names:
                    p.requires_grad_(True)

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
        """Build the data x sequence mesh once the process group exists, and parallelize the DiT."""
        par = self.cfg.parallel
        st = self.cfg.strategy
        if st.kind == "deepspeed" and st.zero_stage == 3:
            # ZeRO-3 partitions the frozen text encoder too, so each of its forwards gathers weights from
            # every rank: all ranks must run it every step. The caption cache would skip the forward on
            # ranks whose captions are cached and leave the others waiting in the gather.
            self.text_encoder.cache_size = 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.mesh = build_mesh(par.size)
        if par.size > 1 and self.sp is None:
            self.sp = parallelize(self.dit, self.mesh, par.mode, par.ulysses_degree)
            if self.global_rank == 0:
                log.info(
                    "sequence parallel: %d data-parallel group(s) of %d ranks (%s)",
                    self.mesh.dp_size,
                    self.mesh.sp_size,
                    par.mode,
                )

    def configure_model(self) -> None:
        """Under FSDP, shard the DiT over the data-parallel mesh (the frozen VAE and text encoder stay whole)."""
        if self.cfg.strategy.kind == "fsdp" and not self._sharded:
            from trainer.strategies import shard_dit

            shard_dit(self.dit, self.device_mesh["data_parallel"], self.cfg.strategy.reshard_after_forward)
            self._sharded = True

    def on_fit_start(self) -> None:
        """On GPUs the frozen VAE and text encoder run in bf16 (they are never trained)."""
        if self.device.type == "cuda":
            self.vae.to(dtype=torch.bfloat16)
            self.text_encoder.to(dtype=torch.bfloat16)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable tensors and add the talkdit metadata."""
        keep = set(self.trainable_state_names())
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["talkdit"] = self.metadata()
        checkpoint["talkdit"]["data_position"] = self.gathered_data_position()
        checkpoint["talkdit"]["rng_state"] = self.gathered_rng_state()

    def gathered_data_position(self) -> dict[str, dict[str, int]]:
        """Every rank's data position ``{rank: {worker: groups}}`` (string keys: the checkpoint is JSON-like)."""
        mine = {str(k): v for k, v in self.data_position.items()}
        if self._trainer is not None and self.trainer.world_size > 1 and torch.distributed.is_initialized():
            every: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(every, mine)
            return {str(r): pos for r, pos in enumerate(every)}
        return {str(self.global_rank): mine}

    def gathered_rng_state(self) -> dict[str, dict]:
        """Every rank's global RNG state ``{rank: state}`` (:mod:`trainer.rng_state`).

        Each rank has its own dropout draws, and only rank 0 writes the checkpoint, so the states are
        gathered like the data position.
        """
        mine = capture_rng_state()
        if self._trainer is not None and self.trainer.world_size > 1 and torch.distributed.is_initialized():
            every: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(every, mine)
            return {str(r): state for r, state in enumerate(every)}
        return {str(self.global_rank): mine}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model, stage or size before any tensor is copied.

        DeepSpeed hands over only its client state (the tensors stay with DeepSpeed); the runner has
        checked those, consolidated, before training started.
        """
        if "state_dict" in checkpoint:
            check_resume_compatible(self, checkpoint, source="checkpoint")
        self.logger_run_id = checkpoint["talkdit"].get("logger_run_id")
        position = checkpoint["talkdit"].get("data_position", {}).get(str(self.global_rank), {})
        self.data_position = {int(k): int(v) for k, v in position.items()}
        states = checkpoint["talkdit"].get("rng_state")
        self._pending_rng_state = (states or {}).get(str(self.global_rank))
        if self._pending_rng_state is None:
            log.warning(
                "the checkpoint holds no RNG state for rank %d%s: dropout draws restart from the seed, so the "
                "run will not repeat an uninterrupted one exactly",
                self.global_rank,
                "" if states is None else f" (it was written by {len(states)} rank(s))",
            )

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Restore this rank's RNG state from the resumed checkpoint right before the first step draws from it.

        Not in :meth:`on_load_checkpoint`: creating the data loader's iterator after the restore draws a seed
        from the global RNG, which the uninterrupted run drew long before the checkpoint.
        """
        if self._pending_rng_state is not None:
            restore_rng_state(self._pending_rng_state)
            self._pending_rng_state = None

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        """Muon for hidden 2-D matrices of trainable modules, AdamW for the rest (see :mod:`trainer.optim`)."""
        if self.cfg.strategy.kind == "deepspeed":
            from trainer.optim.zero import build_zero_optimizer

            bundle = build_zero_optimizer(self.dit.transformer, self.cfg.optim)
        else:
            bundle = build_optimizer(self.dit.transformer, self.cfg.optim)
        if self._trainer is not None and self.trainer.is_global_zero:
            table = bundle.table()
            # Groups to the console; every parameter's row (thousands with LoRA at 13B) to the run dir.
            path = Path(self.trainer.default_root_dir) / "parameters.txt"
            atomic_write_text(path, table + "\n")
            log.info("parameter groups (every parameter in %s):\n%s", path, table.split("\n\n")[0])
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
        self._grad_norm = (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).detach()

    # ------------------------------------------------------------------ the step
    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        """Move the batch's tensors (one level of nesting) to ``device``.

        The batch layout is fixed (:func:`trainer.data.transforms.collate_clips`), so a direct move
        replaces Lightning's generic collection walk, which costs milliseconds per step.
        """

        def move(value):
            if isinstance(value, torch.Tensor):
                return value.to(device, non_blocking=True)
            if isinstance(value, dict):
                return {k: move(v) for k, v in value.items()}
            return value

        return {k: move(v) for k, v in batch.items()}

    def step_generator(self) -> torch.Generator:
        """RNG of this step: a function of (seed, step, data-parallel rank) only, so runs repeat exactly."""
        # Every rank of a sequence group draws the same noise, timesteps and conditions.
        seed = np.random.SeedSequence([self.cfg.seed, self.global_step, self.mesh.dp_rank]).generate_state(1)[0]
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        return gen

    @torch.no_grad()
    def encode_latents(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised clip latents ``[B, C, T, h, w]`` and reference latents ``[B, C, R, h, w]``.

        Uses the shard's cached posterior when the batch carries it; otherwise encodes with the
        frozen VAE (each reference frame on its own, one latent frame each).
        """
        if "latents" in batch:
            lat = batch["latents"]
            x0 = sample_posterior(lat["latent_mean"], lat["latent_logvar"], gen)
            refs = sample_posterior(lat["ref_latent_mean"], lat["ref_latent_logvar"], gen)
        else:
            mean, logvar = encode_posterior(self.vae, batch["frames"])
            x0 = sample_posterior(mean, logvar, gen)
            ref_frames = batch["ref_frames"]
            bsz, refs_n = ref_frames.shape[:2]
            r_mean, r_logvar = encode_posterior(self.vae, ref_frames.reshape(bsz * refs_n, 1, *ref_frames.shape[2:]))
            refs = sample_posterior(r_mean, r_logvar, gen)
            refs = refs.reshape(bsz, refs_n, *refs.shape[1:]).squeeze(3).permute(0, 2, 1, 3, 4)
        return normalize_latents(x0, self.vae), normalize_latents(refs, self.vae)

    def prepare_step(self, batch: dict, gen: torch.Generator) -> StepInputs:
        """Turn a batch into DiT inputs with conditions, noise and masks drawn from ``gen``."""
        x0, ref_lat = self.encode_latents(batch, gen)
        return self.step_inputs(batch, x0, ref_lat, gen)

    def step_inputs(
        self,
        batch: dict,
        x0: torch.Tensor,
        ref_lat: torch.Tensor,
        gen: torch.Generator,
        flags: ConditionFlags | None = None,
        t: torch.Tensor | None = None,
    ) -> StepInputs:
        """DiT inputs of encoded latents: conditions, noise, masks and flow times.

        Args:
            batch: The loader batch (boxes, audio features, captions, fps).
            x0: Normalised clip latents ``[B, C, T, H, W]``.
            ref_lat: Normalised reference latents ``[B, C, R, H, W]``.
            gen: RNG of the random draws.
            flags: Fixed conditions instead of Table 1's random draw (validation).
            t: Fixed flow time per sample ``[B]`` instead of the logit-normal draw (validation).
        """
        cfg, obj, stage = self.cfg, self.cfg.objective, self.cfg.stage
        dev = self.device
        bsz, _, frames_lat, grid_h, grid_w = x0.shape
        fps = batch["fps"].to(dev)

        if flags is None:
            flags = sample_conditions(bsz, stage.p_audio, stage.p_ff, stage.p_v2v, stage.p_id, gen, dev)
        data = cfg.data
        face = lower_face_token_mask(
            batch["lower_face_boxes"].to(dev), grid_h, grid_w, data.mask, data.mask_padding, data.mask_alpha
        )
        m = noise_mask(face, flags.v2v, flags.first_frame).flatten(1)  # [B, N]

        x0_tok = patchify(x0)
        noise, _ = knn_noise(x0_tok, m, obj.knn_candidates, gen)
        if t is None:
            t = sample_timesteps(bsz, obj.timestep_loc, obj.timestep_scale, gen, dev)
        x_t, t_tok = noise_tokens(x0_tok, noise, t, m)
        references = []
        if flags.identity:
            refs = batch["ref_lower_face_boxes"].to(dev)
            references.append(identity_references(ref_lat, refs, grid_h, grid_w, fps))
        windows = valid = None
        if self.dit.adapter_config is not None:
            windows, valid = batch_audio_windows(batch, cfg.audio.window, cfg.audio.feature_rate, dev)
            windows = windows * flags.audio[:, None, None, None, None].to(windows.dtype)
        inputs = assemble_dit_inputs(x_t, t_tok, m, (frames_lat, grid_h, grid_w), fps, windows, valid, references)
        text, text_mask = self.text_encoder(batch["captions"])
        return StepInputs(
            tokens=inputs.tokens,
            timestep=inputs.timestep,
            coords=inputs.coords,
            audio=inputs.audio,
            text=text,
            text_mask=text_mask,
            target=velocity_target(x0_tok, noise),
            mask=m,
            num_ref=inputs.num_ref,
            flags=flags,
            grid=(frames_lat, grid_h, grid_w),
            flow_time=t,
        )

    def forward_velocity(self, inputs: StepInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the DiT; returns ``(pred, target, mask)`` over the tokens this rank holds.

        Without sequence parallelism these are the video tokens ``[B, N, C]``. With it, the whole sequence
        (references first, padding last) is split into equal shards and each rank gets the prediction,
        target and mask of its shard; references and padding carry mask 0.
        """
        sp = self.sp
        if sp is None:
            pred = self.dit(inputs.tokens, inputs.timestep, inputs.text, inputs.text_mask, inputs.coords, inputs.audio)
            return pred[:, inputs.num_ref :], inputs.target, inputs.mask
        n = inputs.tokens.shape[1]
        sp.state.valid_tokens = n
        pred = self.dit(
            sp.shard(inputs.tokens),
            sp.shard(inputs.timestep),
            inputs.text,
            inputs.text_mask,
            sp.shard(inputs.coords, dim=2),
            sp.shard_audio(inputs.audio),
        )
        return pred, self.shard_video(inputs, inputs.target), self.shard_video(inputs, inputs.mask)

    def shard_video(self, inputs: StepInputs, x: torch.Tensor) -> torch.Tensor:
        """This rank's share of a per-video-token tensor ``[B, N, ...]``, aligned with its prediction.

        Without sequence parallelism that is ``x``; with it, ``x`` is placed behind the step's reference
        tokens (zeros there) and sharded like the DiT's input sequence.
        """
        if self.sp is None:
            return x
        pad = [0, 0] * (x.dim() - 2) + [inputs.num_ref, 0]
        return self.sp.shard(F.pad(x, pad))

    def compute_loss(self, inputs: StepInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward the DiT and compute Eq. 8 with the contrastive term.

        The masked squared error is normalised by the masked element count of the whole sequence group
        (Eq. 8 over all shards). Under sequence parallelism each rank's loss is its own shard's share times
        the group size, so that data-parallel gradient averaging over every rank yields the gradient of the
        group's loss.

        Negatives of the contrastive term come from the batch when it holds two or more samples and from
        another data-parallel rank's sample of the same latent grid when it holds one
        (:mod:`trainer.parallel.negatives`); a sample without either trains without the term and is counted.

        Returns:
            ``(loss, metrics)``; metrics include the plain flow-matching loss, per-condition losses, the
            contrastive negatives used and missing in the whole step (all data-parallel ranks), and
            ``loss_per_sample`` ``[B]`` (each sample's flow-matching loss, for the per-``t`` log).
        """
        lam = self.cfg.objective.contrastive_lambda
        plan: NegativePlan | None = None
        negatives = None
        if lam != 0:
            # A collective over the data-parallel group: every rank reaches it once per step, before the forward.
            negatives, plan = exchange_negatives(inputs.target, inputs.grid, self.mesh)
        pred, target, mask = self.forward_velocity(inputs)
        if negatives is not None:
            negatives = self.shard_video(inputs, negatives)
        total, pos, count = contrastive_sq_error(pred, target, mask, lam, negatives)
        scale = 1.0
        if self.sp is not None:
            sums = self.sp.all_reduce(torch.stack([total.detach(), pos.detach(), count]))
            count_all = sums[2]
            scale = float(self.sp.mesh.sp_size)
        else:
            sums, count_all = torch.stack([total.detach(), pos.detach(), count]), count
        denom = count_all.sum().clamp(min=1.0)
        loss = scale * total.sum() / denom
        metrics = {
            "loss": (sums[0].sum() / denom).detach(),  # the group's loss, whatever this rank's share
            "loss_fm": (sums[1].sum() / denom).detach(),
            "masked_fraction": inputs.mask.float().mean(),
        }
        per_sample = (sums[1] / count_all.clamp(min=1.0)).detach()
        metrics["loss_per_sample"] = per_sample
        if plan is not None:
            metrics["contrastive_negatives"] = float(plan.used)
            metrics["contrastive_missing"] = float(plan.missing)
            if plan.missing and not self._warned_missing_negatives:
                self._warned_missing_negatives = True
                if self.global_rank == 0:  # the plan is the same on every rank
                    log.warning(
                        "step %d: %d sample(s) of batch size 1 trained without the contrastive term (no other "
                        "data-parallel rank held a sample of the same latent grid); train/contrastive_missing "
                        "counts them per step",
                        self.global_step,
                        plan.missing,
                    )
        for name, flag in (
            ("v2v", inputs.flags.v2v),
            ("ff", inputs.flags.first_frame),
            ("audio", inputs.flags.audio),
        ):
            for state, sel in (("on", flag), ("off", ~flag)):
                if sel.any():
                    metrics[f"loss_{name}_{state}"] = per_sample[sel].mean()
        return loss, metrics

    def _lightning_logs(self) -> bool:
        # Lightning forwards on-step metrics to the logger only every log_every_n_steps; building them on
        # the other steps would cost ~0.7 ms per self.log call for nothing.
        return self._trainer is not None and self.trainer._logger_connector.should_update_logs

    def _edge_step(self) -> bool:
        """The first or the last optimizer step when Lightning's every-n rule does not log it.

        A run must log its first step (a 3-step run would otherwise leave no metrics at all) and its last.
        """
        if self._trainer is None or self._lightning_logs():
            return False
        loop = self.trainer.fit_loop.epoch_loop
        if loop._should_accumulate():
            return False
        step = loop._batches_that_stepped  # optimizer steps before this one: the step a row is logged at
        return step == 0 or step + 1 >= self.trainer.max_steps

    def _logging_step(self) -> bool:
        return self._lightning_logs() or self._edge_step()

    def _log_step_metrics(self, values: dict, batch_size: int) -> None:
        """Log on-step metrics: through Lightning on its logging steps, straight to the loggers on edge steps.

        Values logged through Lightning stay in its result collection and would be sent again at its next
        logging step, so edge steps bypass it and write their row at the end of the batch.
        """
        if self._lightning_logs():
            self.log_dict(values, on_step=True, on_epoch=False, batch_size=batch_size)
        else:
            self._edge_row.update({k: float(v) for k, v in values.items()})

    def _write_edge_row(self) -> None:
        if not self._edge_row:
            return
        step = self.trainer.fit_loop.epoch_loop._batches_that_stepped
        row = {**self._edge_row, "epoch": float(self.current_epoch)}
        for logger in self.loggers:
            logger.log_metrics(row, step=step)
        self._edge_row = {}

    def track_stream(self, batch: dict) -> None:
        """Record the data position the batch advances to, and stop when too many samples were bad.

        Raises:
            DataError: More than ``data.max_skipped_fraction`` of the samples seen were skipped.
        """
        if "stream_worker" not in batch:
            return
        worker = int(batch["stream_worker"])
        self.data_position[worker] = int(batch["stream_group"])
        self._stream_counts[worker] = (
            int(batch["stream_seen"]),
            int(batch["stream_skipped"]),
            str(batch["stream_first_skipped"]),
        )
        seen = sum(c[0] for c in self._stream_counts.values())
        skipped = sum(c[1] for c in self._stream_counts.values())
        d = self.cfg.data
        if skipped and seen >= d.min_samples_before_skip_check and skipped / seen > d.max_skipped_fraction:
            first = next(c[2] for c in self._stream_counts.values() if c[2])
            raise DataError(
                f"{skipped} of {seen} samples were bad ({skipped / seen:.1%} > data.max_skipped_fraction="
                f"{d.max_skipped_fraction}); the first: {first}"
            )
        if self._logging_step():
            values = {"data/skipped_samples": float(skipped), "data/skipped_fraction": skipped / max(seen, 1)}
            self._log_step_metrics(values, batch_size=1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss."""
        self.track_stream(batch)
        inputs = self.prepare_step(batch, self.step_generator())
        loss, metrics = self.compute_loss(inputs)
        self.accumulate_time_bins(metrics.pop("loss_per_sample"), inputs.flow_time)
        bsz = inputs.tokens.shape[0]
        self.log("train/loss", metrics["loss"], prog_bar=True, on_step=True, on_epoch=False, batch_size=bsz)
        metrics.pop("loss")
        if self._edge_step():
            self._log_step_metrics({"train/loss": loss.detach()}, batch_size=bsz)
        if self._logging_step():
            metrics["identity_refs"] = float(inputs.flags.identity)
            metrics.update(self.pop_time_bin_losses())
            self._log_step_metrics({f"train/{k}": v for k, v in metrics.items()}, batch_size=bsz)
        return loss

    def accumulate_time_bins(self, per_sample: torch.Tensor, flow_time: torch.Tensor) -> None:
        """Add a step's per-sample flow-matching losses ``[B]`` to their flow-time bins (``loop.loss_t_bins``)."""
        edges = list(self.cfg.loop.loss_t_bins)
        if self._t_window is None:
            self._t_window = torch.zeros(len(edges) - 1, 2, device=per_sample.device)
        idx = time_bins(flow_time.to(per_sample.device), edges)
        keep = idx >= 0
        # On the device without a sync: only logging steps read the window.
        self._t_window[:, 0].index_add_(0, idx[keep], per_sample[keep].float())
        self._t_window[:, 1].index_add_(0, idx[keep], torch.ones_like(per_sample[keep], dtype=torch.float32))

    def pop_time_bin_losses(self) -> dict[str, float]:
        """Mean flow-matching loss per flow-time bin since the last logged row (``loss_t<lo>-<hi>``), then reset.

        One sample per rank and step puts a single ``t`` in a step; averaging every step since the last row
        (this rank's samples, like the per-condition losses) gives each logged value more than one sample.
        Bins that received no sample are left out.
        """
        if self._t_window is None:
            return {}
        edges = list(self.cfg.loop.loss_t_bins)
        window = self._t_window.tolist()
        self._t_window.zero_()
        return {
            f"loss_{time_bin_label(edges[i], edges[i + 1])}": total / n for i, (total, n) in enumerate(window) if n > 0
        }

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Step time and samples/s (whole world, averaged since the last log) on the progress bar."""
        now = time.perf_counter()
        if self._window_start is None:  # the first step: speeds are measured from its end
            self._window_start, self._window_steps, self._window_samples = now, 0, 0
            self._write_edge_row()
            return
        self._window_steps += 1
        self._window_samples += len(batch["keys"])
        if not self._logging_step():
            return
        elapsed = now - self._window_start
        world = self.trainer.world_size
        speed = {
            "train/step_time": elapsed / self._window_steps,
            "train/samples_per_s": self._window_samples * world / elapsed,
        }
        if self._lightning_logs():
            self.log_dict(speed, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)
        else:
            self._log_step_metrics(speed, batch_size=1)
        if self._grad_norm is not None:
            self._log_step_metrics({"train/grad_norm_adamw": self._grad_norm}, batch_size=1)
        self._write_edge_row()
        self._window_start, self._window_steps, self._window_samples = now, 0, 0


def check_resume_compatible(module: TalkingHeadModule, checkpoint: dict, source: str) -> None:
    """Refuse a checkpoint whose model/audio/stage config or tensor shapes differ from the module's.

    Raises:
        ValueError: Naming the differing config keys, or the first missing/mis-shaped tensor.
    """
    meta = checkpoint.get("talkdit")
    if meta is None:
        raise ValueError(f"{source} was not written by talkdit (no 'talkdit' metadata)")
    saved = meta.get("config", {})
    now = to_container(module.cfg)
    diffs = [
        d
        for d in _diff_keys({k: saved.get(k) for k in RESUME_KEYS}, {k: now[k] for k in RESUME_KEYS})
        if not d.endswith(RESUME_IGNORED_SUFFIXES)
    ]
    if diffs:
        raise ValueError(f"{source} was trained with another configuration; differing keys: {', '.join(diffs[:12])}")
    own = dict(module.named_parameters())
    for k, v in checkpoint["state_dict"].items():
        if k not in own:
            raise ValueError(f"{source} holds tensor {k!r} that this model does not have")
        if own[k].shape != v.shape:
            raise ValueError(
                f"{source}: tensor {k!r} has shape {tuple(v.shape)}, this model {tuple(own[k].shape)} "
                "(a checkpoint of another model size)"
            )
    missing = [n for n in module.trainable_state_names() if n not in checkpoint["state_dict"]]
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} trainable tensors (first: {missing[0]})")


def _diff_keys(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


__all__ = ["MODULE_PREFIX", "TalkingHeadModule", "check_resume_compatible"]
