"""Running one training stage for a validated config (the heavy half of ``python -m trainer.train``).

Order of work, cheapest checks first: check the shards' first sample; build the model (which loads and
checks every weight file and the stage-1 adapter); check a resume checkpoint against the model; only
then create the run directory and train.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import torch
import webdataset as wds
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO

from trainer.atomic import atomic_path
from trainer.checkpoints import check_resume_compatible, read_training_checkpoint
from trainer.config.errors import ConfigError
from trainer.config.schema import TrainConfig
from trainer.data.buckets import Compression, buckets_for
from trainer.data.datamodule import TalkingHeadDataModule, expand_shards, feature_spec, stream_settings
from trainer.data.plan import decode_plan
from trainer.data.schema import UNREADABLE_SHARD_ERRORS, ShardSampleError
from trainer.data.stream import readers_for
from trainer.lightning_module import TalkingHeadModule
from trainer.progress import LineProgress
from trainer.requeue import RequeueOnSignal
from trainer.run_dir import (
    CHECKPOINT_DIR,
    RUN_DIR_ENV,
    auto_resume_checkpoint,
    prepare_run_dir,
    save_last_checkpoint,
)
from trainer.state_callbacks import training_state_callbacks
from trainer.strategies import build_strategy, write_deepspeed_config

log = logging.getLogger("talkdit.train")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes a temporary file and renames it: never a partial checkpoint."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        """Save ``checkpoint`` to ``path`` atomically."""
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class FinalCheckpoint(Callback):
    """Save ``last.ckpt`` when training stops between periodic checkpoints, so no finished step is lost.

    ModelCheckpoint's own train-end save only happens when it saved no ``last`` in this run at all.
    """

    def __init__(self, path: Path):
        self.path = path
        self._saved_step = -1  # the step of the newest checkpoint this run wrote (with it, last.ckpt)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Note the step a checkpoint was written at (ModelCheckpoint and the requeue write ``last.ckpt`` then)."""
        self._saved_step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the final state unless ``last.ckpt`` already holds this step."""
        if self._saved_step != trainer.global_step or not self.path.exists():
            save_last_checkpoint(trainer, self.path)


class _NoTips(logging.Filter):
    """Drops Lightning's "💡 Tip:" advertisements."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_NO_TIPS = _NoTips()  # one instance: adding it again is then a no-op


@dataclass
class TrainResult:
    """Where a finished run put its outputs.

    Attributes:
        run_dir: The run directory.
        last_checkpoint: Path of ``last.ckpt``.
        final_loss: Last logged training loss.
    """

    run_dir: Path
    last_checkpoint: Path
    final_loss: float | None


def preflight_shards(cfg: TrainConfig) -> None:
    """Check the first sample of the first readable shard against the schema before anything is written.

    Shards that are not readable tar files are skipped with a warning, as the loader will skip them.

    Raises:
        FileNotFoundError: No shard matches ``data.shards``.
        ShardSampleError: The sample breaks the schema (names shard, key and member), or no shard is readable.
    """
    settings = stream_settings(
        cfg.data, feature_spec(cfg), cfg.objective.num_reference_frames, Compression.of(cfg.model.vae)
    )
    urls = expand_shards(cfg.data.shards)
    unreadable: list[ShardSampleError] = []
    for url in urls:
        try:
            for raw in wds.tarfile_samples([{"url": url}]):
                plan = settings.plan(raw, 0)
                decode_plan(plan, settings.num_refs, settings.default_caption)
                for err in unreadable:
                    log.warning("data.shards: skipping %s", err)
                return
        except UNREADABLE_SHARD_ERRORS as err:
            unreadable.append(ShardSampleError(url, None, f"not a readable tar file ({' '.join(str(err).split())})"))
    if unreadable and len(unreadable) == len(urls):
        if len(urls) == 1:
            raise unreadable[0]
        raise ShardSampleError(urls[0], None, f"not a readable tar file, nor are the other {len(urls) - 1} shards")
    raise ShardSampleError(urls[0], None, "shard holds no sample")


def data_layout(cfg: TrainConfig) -> dict:
    """What fixes each rank's sample order; a resumed run continues the stream only if it is unchanged."""
    urls = expand_shards(cfg.data.shards)
    groups = cfg.strategy.devices * cfg.strategy.num_nodes // cfg.parallel.size  # data-parallel degree
    d = cfg.data
    layout = {
        "shards": hashlib.sha256("\n".join(urls).encode()).hexdigest()[:16],
        "readers": groups * max(1, readers_for(len(urls), groups, d.num_workers)),
        "seed": d.seed,
        "tokens_per_batch": d.tokens_per_batch,
        "megapixels": [d.min_megapixels, d.max_megapixels],
        "max_frames": d.max_frames,
        "shuffle_buffer": d.shuffle_buffer,
        "use_cached_latents": d.use_cached_latents,
    }
    aspect = [b.name for b in buckets_for(d, Compression.of(cfg.model.vae)) if b.tokens != d.tokens_per_batch]
    if aspect:  # recorded only when there are any: a run whose buckets are the exact grid keeps its old layout
        layout["aspect_buckets"] = aspect
    return layout


def build_logger(cfg: TrainConfig, run_dir: Path, run_id: str | None) -> Logger:
    """CSV or (offline by default) wandb logger writing inside the run directory."""
    if cfg.logger.name == "wandb":
        if cfg.logger.mode != "online":
            # Offline runs must not try to reach wandb's error reporting either.
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        return WandbLogger(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            name=cfg.experiment_name,
            save_dir=str(run_dir),
            mode=cfg.logger.mode,
            tags=list(cfg.logger.tags),
            id=run_id,
            resume="allow" if run_id else None,
        )
    # A new version folder per launch: a resumed run must not overwrite the metrics logged before it. Rows are
    # written as they are logged (not every 100 steps), so metrics.csv exists from the first logged step.
    return CSVLogger(save_dir=str(run_dir), name="logs", flush_logs_every_n_steps=1)


def build_callbacks(cfg: TrainConfig) -> list[Callback]:
    """The callbacks of ``cfg.callbacks``, built with Hydra's ``instantiate`` (validation is one of them).

    Raises:
        ConfigError: A callback's ``_target_`` cannot be imported or its arguments do not fit (names the
            callback); errors of the callback's own settings pass through as it raised them.
    """
    built = []
    for name, spec in cfg.callbacks.items():
        if spec is None:
            continue
        if not isinstance(spec, dict) or "_target_" not in spec:
            raise ConfigError(f"callbacks.{name}", spec, "expected a mapping with _target_ (a callback's import path)")
        try:
            callback = instantiate(spec)
        except InstantiationException as err:
            if isinstance(err.__cause__, (ConfigError, FileNotFoundError, ValueError)):
                raise err.__cause__ from None
            raise ConfigError(f"callbacks.{name}._target_", spec["_target_"], str(err).splitlines()[0]) from err
        if not isinstance(callback, Callback):
            raise ConfigError(f"callbacks.{name}._target_", spec["_target_"], "is not a lightning Callback")
        built.append(callback)
    return built


def build_trainer(cfg: TrainConfig, run_dir: Path, logger: Logger, extra: list[Callback] | None = None) -> L.Trainer:
    """The ``lightning.Trainer`` for a config (devices, strategy, precision, checkpointing, ``extra`` callbacks)."""
    st = cfg.strategy
    checkpoint = ModelCheckpoint(
        dirpath=str(run_dir / CHECKPOINT_DIR),
        filename="step{step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=cfg.loop.checkpoint_every_n_steps,
        save_top_k=cfg.loop.keep_last_checkpoints,
        monitor="step",
        mode="max",
        save_last=True,
    )
    callbacks = [checkpoint, FinalCheckpoint(run_dir / CHECKPOINT_DIR / "last.ckpt")]
    # A bar redraws itself with carriage returns: in a log file that is one ever-growing line, so without a
    # terminal progress goes out as a line every loop.progress_every_n_steps steps / progress_every_s seconds.
    bar = cfg.loop.progress_bar and sys.stdout.isatty()
    if bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    elif cfg.loop.progress_bar:
        callbacks.append(LineProgress(cfg.loop.progress_every_n_steps, cfg.loop.progress_every_s))
    plugins = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        # Lightning's own requeue handler checkpoints inside the signal handler, which can interleave with a
        # gradient all-reduce and hang the job; RequeueOnSignal checkpoints at a step boundary instead.
        plugins.append(SLURMEnvironment(auto_requeue=False))
        callbacks.append(RequeueOnSignal(run_dir))
    callbacks += training_state_callbacks(cfg.data)
    callbacks += extra or []
    return L.Trainer(
        accelerator=st.accelerator,
        devices=st.devices,
        num_nodes=st.num_nodes,
        strategy=build_strategy(st),
        precision=st.precision,
        max_steps=cfg.loop.max_steps,
        log_every_n_steps=cfg.loop.log_every_n_steps,
        accumulate_grad_batches=cfg.loop.accumulate_grad_batches,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=str(run_dir),
        enable_progress_bar=bar,
        enable_model_summary=False,
        deterministic=cfg.loop.deterministic,
        plugins=plugins,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
    )


def train(cfg: TrainConfig) -> TrainResult:
    """Run one training stage for a validated config.

    Returns:
        Where the outputs are.
    """
    # The VAE, text encoder and frozen DiT stay in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)
    # The module's transfer_batch_to_device is meant to win over the datamodule's default.
    warnings.filterwarnings("ignore", message=r"You have overridden `transfer_batch_to_device`", category=UserWarning)
    # talkdit clips (AdamW only) in configure_gradient_clipping under DeepSpeed too (trainer.optim.zero).
    warnings.filterwarnings("ignore", message=r"Since DeepSpeed handles gradient clipping internally")
    # Lightning nags whenever an `srun` binary exists; a run outside a SLURM job is not a mistake.
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    # Lightning 2.6's own pytree helper builds torch's deprecated LeafSpec at every fit: a note to Lightning's
    # developers that a user cannot act on.
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    # Lightning advertises its hosted logger at every fit; talkdit's loggers are csv and wandb.
    from lightning_utilities.core import rank_zero

    rank_zero.log.addFilter(_NO_TIPS)
    if cfg.resume == "auto":
        found = auto_resume_checkpoint(cfg)
        cfg = replace(cfg, resume=str(found) if found else None)
        log.info("resume=auto: %s", f"continuing from {found}" if found else "no checkpoint yet, starting fresh")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    preflight_shards(cfg)
    extra_callbacks = build_callbacks(cfg)
    module = TalkingHeadModule(cfg)
    module.data_layout = data_layout(cfg)
    run_id, start_position = None, None
    if cfg.resume is not None:
        ckpt = read_training_checkpoint(cfg.resume)
        check_resume_compatible(module, ckpt, source=cfg.resume)
        run_id = ckpt["talkdit"].get("logger_run_id")
        saved_layout = ckpt["talkdit"].get("data_layout") or {}
        changed = sorted(k for k in module.data_layout if saved_layout.get(k) != module.data_layout[k])
        if changed:
            hint = (
                "; a run from before aspect buckets resumes with data.bucket_aspects=[]"
                if "aspect_buckets" in changed and "aspect_buckets" not in saved_layout
                else ""
            )
            raise ValueError(
                f"{cfg.resume}: the data stream cannot continue where it stopped because {', '.join(changed)} "
                f"changed (shards, seed, workers x ranks, bucketing); restore them to resume{hint}"
            )
        start_position = ckpt["talkdit"].get("data_position")
    run_dir = prepare_run_dir(cfg, resuming=cfg.resume is not None)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0:
        write_deepspeed_config(cfg.strategy, run_dir)
    logger = build_logger(cfg, run_dir, run_id)
    if isinstance(logger, WandbLogger):
        module.logger_run_id = logger.experiment.id
    data = TalkingHeadDataModule(
        cfg.data, feature_spec(cfg), cfg.objective.num_reference_frames, Compression.of(cfg.model.vae), start_position
    )
    trainer = build_trainer(cfg, run_dir, logger, extra_callbacks)
    # Lightning starts the other local ranks as copies of this command; they must find this run dir.
    os.environ[RUN_DIR_ENV] = str(run_dir)
    had_process_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    final_loss = None
    try:
        trainer.fit(module, datamodule=data, ckpt_path=cfg.resume)
        loss = trainer.callback_metrics.get("train/loss")
        final_loss = float(loss) if loss is not None else None
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
        if isinstance(logger, WandbLogger):
            # A later run in the same process (the demo's stage 2, tests) must start its own wandb run.
            logger.experiment.finish()
        del trainer, module, data
        if not had_process_group:
            _end_process_group()
    return TrainResult(run_dir=run_dir, last_checkpoint=run_dir / CHECKPOINT_DIR / "last.ckpt", final_loss=final_loss)


def _end_process_group() -> None:
    """Destroy the process group the run's strategy made, after freeing what holds its pending work.

    Left to interpreter exit, gloo's outstanding work objects abort the process ("terminate called without an
    active exception", exit -6): seen on a 2-rank CPU run ending at a requeue signal, which SLURM would then
    count as a failed job.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.destroy_process_group()
