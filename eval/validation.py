"""Validation during training: held-out loss at fixed flow times, sampled clips, metrics and videos.

:class:`ValidationCallback` is a Lightning callback the training runner receives from the ``callbacks``
config group (``conf/callbacks/default.yaml``: ``_target_: eval.validation.ValidationCallback``); its settings
are the training config's ``validation.*``, and it does nothing while ``validation.every_n_steps`` is 0. It
runs every ``validation.every_n_steps`` optimizer steps, at a step boundary (``on_train_batch_end`` of the
batch that stepped, as :class:`trainer.requeue.RequeueOnSignal`), with the model in eval mode and without
gradients:

1. **Held-out loss** (:mod:`trainer.held_out`). The first ``loss_batches`` batches of the validation shards
   at every ``t = q`` of ``timestep_quantiles``, identity references per ``validation.identity_refs``,
   normalised over every masked element of every batch and rank: ``val/loss_t<q>``, and ``val/loss`` their
   mean.
2. **Samples.** The first ``num_clips`` clips of the shards (:func:`eval.clips.read_clips`), each sampled in
   every mode with :class:`eval.sampler.sampler.EulerSampler` (``sample_steps``), scored with
   one :class:`eval.metrics.MetricSuite` per run (weights from ``TALKDIT_*``, each network loaded once;
   metrics without weights are absent)
   and written as mp4 with the driving audio to ``<run_dir>/validation/step<N>/<clip>.mp4`` by global
   rank 0 (``<mode>/<clip>.mp4`` below it for the modes after the first); under a ``WandbLogger`` the
   files are logged as videos as well.

Distribution. Every rank takes part, so no collective waits on a rank that skipped validation: clip and
loss batch ``i`` belong to rank ``i % world``; each rank runs the same number of them (a rank short of
work repeats its last one, not counted) so that strategies which gather sharded weights inside the
forward (FSDP, ZeRO-3) see the same number of forwards on every rank (the remaining difference, from
clips of different lengths under TAPSF blocks, is made up with repeated DiT forwards; FSDP shards the DiT
only). Loss sums, metric sums and counts are all-reduced, so every rank holds the same values; rank 0's
loggers write them (already reduced: no ``sync_dist``). Sequence parallelism and DeepSpeed ZeRO-3 (which
also partitions the VAE and text encoder, whose forward counts differ between ranks) are refused by the
config rules for now.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from eval.clips import clip_batch, read_clips, sample_clip
from eval.config import MODES, check_modes
from eval.metrics import METRIC_NAMES, MetricSuite, MetricWeights
from eval.pairing import novel_audio_partners
from eval.sampler.config import GuidanceConfig, SamplerConfig
from eval.sampler.sampler import EulerSampler
from eval.sampler.video_out import write_sample
from trainer.config.errors import ConfigError
from trainer.config.schema import ValidationConfig
from trainer.data.plan import decode_plan
from trainer.data.shard_paths import expand_shards
from trainer.data.transforms import batch_to_device, collate_clips
from trainer.held_out import held_out_errors, loss_plan_groups, quantile_key, rank_share

log = logging.getLogger("talkdit.validation")

VALIDATION_DIR = "validation"


def _has_opencv() -> bool:
    try:
        import cv2  # noqa: F401  (only asked whether the data extra is installed)
    except ImportError:
        return False
    return True


def _distributed(trainer: L.Trainer) -> bool:
    return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


@dataclass
class _Clip:
    """One validation clip as read once at set-up (:func:`eval.clips.read_clips`)."""

    sample: object  # trainer.data.decode.ClipSample
    audio: np.ndarray  # [S] float32
    sample_rate: int


class _ForwardCounter:
    """Counts DiT forwards and keeps the last one's arguments, to equalise forwards across ranks."""

    def __init__(self, dit: torch.nn.Module):
        self.count = 0
        self.last: tuple[tuple, dict] | None = None
        self.handle = dit.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.count += 1
        self.last = (args, kwargs)

    def close(self) -> None:
        self.handle.remove()
        self.last = None


class ValidationCallback(Callback):
    """Held-out loss at fixed flow times and sampled clips with metrics, every ``every_n_steps`` steps.

    The runner builds it from the ``callbacks`` config group with ``cfg: ${validation}``; while
    ``validation.every_n_steps`` is 0 it does nothing. Videos go to ``<trainer.default_root_dir>/validation/
    step<N>/`` (the runner sets the root to the run directory).

    Args:
        cfg: ``validation.*`` of the training config.
        weights: Metric weight files; default :meth:`eval.metrics.MetricWeights.from_env`.

    Raises:
        ConfigError: ``validation.modes`` or ``validation.v2v_mask`` names something eval cannot sample.
    """

    def __init__(self, cfg: ValidationConfig | DictConfig, weights: MetricWeights | None = None):
        if not isinstance(cfg, ValidationConfig):  # as Hydra's instantiate passes it
            cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ValidationConfig), cfg))
        self.cfg = cfg
        self.enabled = cfg.every_n_steps > 0
        check_modes(cfg.modes, cfg.v2v_mask, prefix="validation.")
        if self.enabled and cfg.num_clips and not _has_opencv():
            raise ConfigError(
                "validation.num_clips",
                cfg.num_clips,
                "sampled clips are written as mp4 with OpenCV, which comes with the data extra (pip install "
                "'talkdit[data]'); install it, or set validation.num_clips=0 to validate the held-out loss only",
            )
        self.weights = weights
        self.run_dir: Path | None = None
        # A pattern matching nothing fails here, before the model is built.
        self.urls = expand_shards(cfg.shards, key="validation.shards") if self.enabled else []
        self.clips: list[_Clip] = []
        self.last_step: int | None = None
        self.results: dict[int, dict[str, float]] = {}  # step -> logged values (every rank)
        self.metrics: MetricSuite | None = None
        self.partners: list[int] = []  # clip index -> the clip whose speech drives it in v2v_novel

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        """Read the fixed clips (every rank reads all of them: any rank may pad with any) and check the shards."""
        if stage != "fit" or not self.enabled:
            return
        cfg = self.cfg
        self.run_dir = Path(trainer.default_root_dir)
        if self.weights is None:
            self.weights = MetricWeights.from_env()
        if cfg.num_clips:
            self.clips = [
                _Clip(c, a, sr)
                for c, a, sr in read_clips(cfg.shards, pl_module.cfg, cfg.num_clips, key="validation.shards")
            ]
            if not self.clips:
                raise FileNotFoundError(f"validation.shards={cfg.shards}: no clip found")
            self.partners = novel_audio_partners([c.sample for c in self.clips])
        if cfg.loss_batches and not loss_plan_groups(pl_module.cfg, self.urls, 1):
            raise ValueError(
                f"validation.shards={cfg.shards}: not one full batch of data.tokens_per_batch="
                f"{pl_module.cfg.data.tokens_per_batch} tokens in these shards; add clips or set "
                "validation.loss_batches=0"
            )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """At every ``every_n_steps``-th optimizer step boundary, validate (all ranks)."""
        if not self.enabled or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # inside a gradient accumulation window: not a step boundary
        step = trainer.global_step
        if step == 0 or step % self.cfg.every_n_steps or step == self.last_step:
            return
        self.last_step = step
        values = self.validate(trainer, pl_module)
        self.results[step] = values
        # Every rank reports what it holds (the same values after the all-reduce; tests compare them).
        log.info("validation at step %d on rank %d: %s", step, trainer.global_rank, json.dumps(values, sort_keys=True))
        # Lightning logs the training metrics of optimizer step N at index N - 1; use the same row.
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step - 1)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in values.items()})
        if hasattr(pl_module, "_window_start"):
            # The module's step-time window must not count the validation as training time.
            pl_module._window_start = None

    # ------------------------------------------------------------------ the validation
    def validate(self, trainer: L.Trainer, pl_module) -> dict[str, float]:
        """Run one validation on every rank; returns the reduced values (the same on every rank).

        Raises:
            RuntimeError: Validation failed on some rank (raised on every rank, so none waits forever).
        """
        modes = {m: m.training for m in pl_module.modules()}
        pl_module.eval()
        sharded = self._sharded(pl_module)
        counter = _ForwardCounter(pl_module.dit) if sharded else None
        error: BaseException | None = None
        loss = metrics = None
        frames: dict[tuple[str, int], np.ndarray] = {}
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        try:
            # Own RNG streams throughout; the training's global RNG state is left as it was.
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                try:
                    loss = self._loss_sums(trainer, pl_module)
                    metrics, frames = self._samples(trainer, pl_module)
                except Exception as err:  # reported on every rank below, after the collectives
                    error = err
                    log.exception("validation failed on rank %d", trainer.global_rank)
                if counter is not None:
                    with trainer.precision_plugin.forward_context():
                        self._equalise_forwards(trainer, pl_module, counter)
        finally:
            if counter is not None:
                counter.close()
            for m, training in modes.items():
                m.train(training)  # exactly as before: the frozen VAE and text encoder stay in eval mode
        failed = torch.tensor([1.0 if error is not None else 0.0], device=pl_module.device)
        if _distributed(trainer):
            torch.distributed.all_reduce(failed, op=torch.distributed.ReduceOp.MAX)
        if failed.item() > 0:
            raise RuntimeError(f"validation at step {trainer.global_step} failed on a rank") from error
        values = self._reduce(trainer, pl_module, loss, metrics)
        self._write_videos(trainer, frames)
        return values

    @staticmethod
    def _sharded(pl_module) -> bool:
        # Strategies whose DiT forward gathers weights (a collective): FSDP, and ZeRO-3 (refused by the config
        # rules for now, see the module docstring).
        st = pl_module.cfg.strategy
        return st.kind == "fsdp" or (st.kind == "deepspeed" and st.zero_stage == 3)

    def _loss_sums(self, trainer: L.Trainer, pl_module) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's error sums and counts per quantile ``([Q], [Q])`` over its own loss batches."""
        cfg = self.cfg
        qs = list(cfg.timestep_quantiles)
        dev = pl_module.device
        sums = torch.zeros(len(qs), device=dev)
        counts = torch.zeros(len(qs), device=dev)
        if not cfg.loss_batches:
            return sums, counts
        groups = loss_plan_groups(pl_module.cfg, self.urls, cfg.loss_batches)
        indices, real = rank_share(len(groups), trainer.global_rank, trainer.world_size)
        data = pl_module.cfg.data
        num_refs = pl_module.cfg.objective.num_reference_frames
        for k, j in enumerate(indices):
            batch = collate_clips([decode_plan(p, num_refs, data.default_caption) for p in groups[j]])
            batch = batch_to_device(batch, dev)
            # The training step's precision (autocast under *-mixed), as in training_step.
            with trainer.precision_plugin.forward_context():
                s, c = held_out_errors(
                    pl_module.model, pl_module.cfg, batch, qs, cfg.seed + j, cfg.identity_refs, pl_module.sp
                )
            if k < real:  # padding batches only keep the forwards in step
                sums += s
                counts += c
        return sums, counts

    def _samples(self, trainer: L.Trainer, pl_module) -> tuple[torch.Tensor, dict[tuple[str, int], np.ndarray]]:
        """Sample this rank's clips in every mode.

        Returns:
            ``(metric sums and counts [M, K, 2], frames)``: for mode ``M`` and metric ``K`` the sum of the
            finite values and their count; ``frames[(mode, clip index)]`` ``[F, H, W, 3]`` uint8 of this
            rank's own clips.
        """
        cfg = self.cfg
        stats = torch.zeros(len(cfg.modes), len(METRIC_NAMES), 2, dtype=torch.float64)
        frames_out: dict[tuple[str, int], np.ndarray] = {}
        if not self.clips:
            return stats.to(pl_module.device), frames_out
        sampler_cfg = SamplerConfig(
            num_steps=cfg.sample_steps,
            guidance=GuidanceConfig(audio=cfg.audio_guidance, text=cfg.text_guidance),
            seed=cfg.seed,
        )
        sampler = EulerSampler(pl_module.dit, sampler_cfg, pl_module.cfg.objective.timestep_loc)
        num_refs = pl_module.cfg.objective.num_reference_frames
        indices, real = rank_share(len(self.clips), trainer.global_rank, trainer.world_size)
        for k, i in enumerate(indices):
            clip = self.clips[i]
            for mi, mode in enumerate(cfg.modes):
                whisper, drive = None, clip.audio
                if mode == "v2v_novel":  # driven by another clip's speech, paired as eval.run pairs them
                    other = self.clips[self.partners[i]]
                    whisper, drive = other.sample.whisper, other.audio
                batch = clip_batch(clip.sample, num_refs, whisper)
                with trainer.precision_plugin.forward_context():  # the metrics below run outside autocast
                    frames = sample_clip(
                        pl_module.model,
                        pl_module.cfg,
                        sampler,
                        batch,
                        MODES[mode][0],
                        cfg.v2v_mask,
                        cfg.identity_refs,
                        cfg.seed + i,
                    )
                if k >= real:
                    continue  # a padding clip: its forwards keep the ranks in step, it is not scored
                frames_out[(mode, i)] = frames
                if self.metrics is None:
                    # One suite for the whole run (each metric network read once), made at the first scoring:
                    # the module is on its training device by then, which it is not yet in setup().
                    self.metrics = MetricSuite(self.weights, pl_module.device)
                values = self.metrics(
                    frames, clip.sample.frames, drive, clip.sample.fps, clip.sample_rate, clip.sample.ref_frames[0]
                )
                for ki, name in enumerate(METRIC_NAMES):
                    v = values.get(name)
                    if v is not None and np.isfinite(v):
                        stats[mi, ki, 0] += v
                        stats[mi, ki, 1] += 1
        return stats.to(pl_module.device), frames_out

    @staticmethod
    def _equalise_forwards(trainer: L.Trainer, pl_module, counter: _ForwardCounter) -> None:
        # Clips of different lengths need different numbers of TAPSF block forwards; a rank that ran fewer
        # repeats its last forward so that every rank's weight gathers pair up.
        if not _distributed(trainer):
            return
        most = torch.tensor([counter.count], device=pl_module.device, dtype=torch.long)
        torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX)
        missing = int(most.item()) - counter.count
        if missing and counter.last is None:
            raise RuntimeError("validation: this rank ran no DiT forward to repeat")
        for _ in range(missing):
            args, kwargs = counter.last
            pl_module.dit(*args, **kwargs)

    def _reduce(
        self, trainer: L.Trainer, pl_module, loss: tuple[torch.Tensor, torch.Tensor], metrics: torch.Tensor
    ) -> dict[str, float]:
        """All-reduce the loss and metric sums; the values every rank logs."""
        sums, counts = loss
        # float64 on the wire: metric sums over many clips keep their digits; one collective for all.
        flat = torch.cat([sums.double(), counts.double(), metrics.double().flatten()])
        if _distributed(trainer):
            torch.distributed.all_reduce(flat)
        q = len(self.cfg.timestep_quantiles)
        sums, counts, stats = flat[:q], flat[q : 2 * q], flat[2 * q :].reshape(metrics.shape)
        values: dict[str, float] = {}
        if self.cfg.loss_batches:
            per_q = (sums / counts.clamp(min=1.0)).tolist()
            for qv, v in zip(self.cfg.timestep_quantiles, per_q):
                values[quantile_key(qv)] = float(v)
            values["val/loss"] = float(np.mean(per_q))
        for mi, mode in enumerate(self.cfg.modes):
            prefix = "val/" if mi == 0 else f"val/{mode}/"
            for ki, name in enumerate(METRIC_NAMES):
                total, n = float(stats[mi, ki, 0]), float(stats[mi, ki, 1])
                if n > 0:
                    values[prefix + name] = total / n
        return values

    def _write_videos(self, trainer: L.Trainer, frames: dict[tuple[str, int], np.ndarray]) -> None:
        """Gather every rank's sampled frames on global rank 0, which writes the mp4s (and logs them to wandb)."""
        if not self.clips:
            return
        if _distributed(trainer):
            gathered: list | None = [None] * trainer.world_size if trainer.is_global_zero else None
            torch.distributed.gather_object(frames, gathered, dst=0)
            if not trainer.is_global_zero:
                return
            frames = {k: v for part in gathered for k, v in part.items()}
        elif not trainer.is_global_zero:
            return
        out = self.run_dir / VALIDATION_DIR / f"step{trainer.global_step:07d}"
        written: dict[str, list[tuple[str, Path]]] = {}
        for (mode, i), video in sorted(frames.items(), key=lambda kv: (self.cfg.modes.index(kv[0][0]), kv[0][1])):
            clip = self.clips[i]
            drive = clip.audio
            if mode == "v2v_novel":
                drive = self.clips[self.partners[i]].audio
            sub = out if mode == self.cfg.modes[0] else out / mode
            path = sub / f"{clip.sample.key}.mp4"
            write_sample(path, video, clip.sample.fps, drive, clip.sample_rate)
            written.setdefault(mode, []).append((clip.sample.key, path))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for mode, items in written.items():
                    # From the written files: they carry the audio, and wandb needs no video encoder.
                    logger.log_video(
                        key=f"val/video/{mode}",
                        videos=[str(p) for _, p in items],
                        step=trainer.global_step - 1,
                        caption=[k for k, _ in items],
                    )


__all__ = ["VALIDATION_DIR", "ValidationCallback"]
