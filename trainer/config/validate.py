"""Rules on the training configuration that types cannot express.

All of them run before any model, dataset or run directory is touched, so a bad override costs
seconds, not a queued multi-node job.
"""

from __future__ import annotations

from pathlib import Path

from trainer.config.errors import ConfigError
from trainer.config.rules import component_source, positive, require
from trainer.config.schema import TrainConfig
from trainer.config.validate_stage import validate_stage

_STRATEGY_ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
_LOGGERS = ("csv", "wandb")
_WANDB_MODES = ("offline", "online", "disabled")
_STRATEGIES = ("ddp", "fsdp", "deepspeed")
_PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "16-mixed")


def validate_frames(key: str, num_frames: int, temporal: int) -> None:
    """Check a frame count against a VAE's temporal compression ``temporal`` (``t``).

    Args:
        key: Config key used in the error message.
        num_frames: Video frames in a clip.
        temporal: Video frames per latent frame after frame 0 (``model.vae.temporal_compression``; the shard
            format's clips use :data:`trainer.data.schema.CLIP_FRAME_STEP`).

    Raises:
        ConfigError: Unless ``num_frames = t·k + 1`` with ``k >= 1``.
    """
    require(
        num_frames >= temporal + 1 and num_frames % temporal == 1 % temporal,
        key,
        num_frames,
        f"must be {temporal}k+1 with k >= 1 (latent frame 0 is video frame 0 alone, then {temporal} frames per "
        "latent frame)",
    )


def validate_train_config(cfg: TrainConfig) -> None:
    """Check every cross-field rule of a composed training config.

    Args:
        cfg: The composed config as dataclass objects.

    Raises:
        ConfigError: Naming the first key that breaks a rule.
    """
    m = cfg.model
    component_source("model.transformer", m.transformer.source, m.transformer.path)
    component_source("model.vae", m.vae.source, m.vae.path)
    require(
        m.text_encoder.source in ("random", "diffusers"),
        "model.text_encoder.source",
        m.text_encoder.source,
        "must be 'random' or 'diffusers'",
    )
    if m.text_encoder.source != "random":
        component_source("model.text_encoder", m.text_encoder.source, m.text_encoder.path)
    arch = m.transformer.arch
    require(
        arch.patch_size == 1 and arch.patch_size_t == 1,
        "model.transformer.arch.patch_size",
        arch.patch_size,
        "talkdit's token layout assumes patch_size=1 and patch_size_t=1 (as LTX-Video 0.9.x)",
    )
    for name in (
        "num_attention_heads",
        "attention_head_dim",
        "num_layers",
        "in_channels",
        "caption_channels",
    ):
        positive(f"model.transformer.arch.{name}", getattr(arch, name))
    require(
        arch.out_channels == arch.in_channels,
        "model.transformer.arch.out_channels",
        arch.out_channels,
        f"must equal in_channels ({arch.in_channels}): the DiT predicts a velocity in latent space",
    )
    if m.vae.source == "random":
        lat = m.vae.arch.get("latent_channels")
        require(
            lat == arch.in_channels,
            "model.vae.arch.latent_channels",
            lat,
            f"must equal model.transformer.arch.in_channels ({arch.in_channels})",
        )
    require(
        m.vae.spatial_compression == 32,
        "model.vae.spatial_compression",
        m.vae.spatial_compression,
        "LTX-Video's VAE compresses 32x32 pixels into one token",
    )
    require(
        m.vae.temporal_compression == 8,
        "model.vae.temporal_compression",
        m.vae.temporal_compression,
        "LTX-Video's VAE compresses 8 frames into one latent frame",
    )
    positive("model.text_encoder.max_length", m.text_encoder.max_length)

    a = cfg.audio
    for name in ("feature_layers", "feature_dim", "feature_rate", "window", "adapter_dim"):
        positive(f"audio.{name}", getattr(a, name))

    validate_stage(cfg.stage)

    o = cfg.objective
    require(o.timestep_scale > 0, "objective.timestep_scale", o.timestep_scale, "must be > 0")
    require(o.knn_candidates >= 1, "objective.knn_candidates", o.knn_candidates, "must be >= 1 (1 disables KNN)")
    require(o.contrastive_lambda >= 0, "objective.contrastive_lambda", o.contrastive_lambda, "must be >= 0")
    require(o.num_reference_frames >= 1, "objective.num_reference_frames", o.num_reference_frames, "must be >= 1")

    cfg.optim.validate()

    d = cfg.data
    validate_frames("data.max_frames", d.max_frames, cfg.model.vae.temporal_compression)
    latent_frames = (d.max_frames - 1) // cfg.model.vae.temporal_compression + 1
    require(
        cfg.stage.p_frame_ref == 0 or latent_frames >= 3,
        "stage.p_frame_ref",
        cfg.stage.p_frame_ref,
        f"needs clips of at least 3 latent frames (two references around a generated one); data.max_frames="
        f"{d.max_frames} gives {latent_frames}",
    )
    require(d.tokens_per_batch >= 1, "data.tokens_per_batch", d.tokens_per_batch, "must be >= 1")
    require(
        0 < d.min_megapixels <= d.max_megapixels,
        "data.min_megapixels",
        d.min_megapixels,
        "must be > 0 and <= data.max_megapixels",
    )
    require(d.num_workers >= 0, "data.num_workers", d.num_workers, "must be >= 0")
    require(d.shuffle_buffer >= 1, "data.shuffle_buffer", d.shuffle_buffer, "must be >= 1")
    require(d.mask in ("enclosing", "adaptive"), "data.mask", d.mask, "must be 'enclosing' or 'adaptive'")
    require(0 <= d.mask_alpha <= 1, "data.mask_alpha", d.mask_alpha, "must be in [0, 1]")
    require(d.mask_padding >= 0, "data.mask_padding", d.mask_padding, "must be >= 0")
    require(0 <= d.max_skipped_fraction <= 1, "data.max_skipped_fraction", d.max_skipped_fraction, "in [0, 1]")
    from trainer.data.buckets import Compression, buckets_for, parse_aspect

    require(0 <= d.bucket_tolerance < 0.5, "data.bucket_tolerance", d.bucket_tolerance, "must be in [0, 0.5)")
    for aspect in d.bucket_aspects:
        try:
            parse_aspect(aspect)
        except ValueError as err:
            raise ConfigError("data.bucket_aspects", list(d.bucket_aspects), str(err)) from None
    compression = Compression.of(cfg.model.vae)
    if not buckets_for(d, compression):
        raise ConfigError(
            "data.tokens_per_batch",
            d.tokens_per_batch,
            f"no frame size in [{d.min_megapixels}, {d.max_megapixels}] MP with sides multiple of "
            f"{compression.spatial} (model.vae.spatial_compression) divides this "
            "budget into whole latent frames and samples; choose a budget with more divisors (e.g. 24576)",
        )

    st = cfg.strategy
    require(
        st.accelerator in _STRATEGY_ACCELERATORS,
        "strategy.accelerator",
        st.accelerator,
        f"must be one of {_STRATEGY_ACCELERATORS}",
    )
    require(st.devices >= 1, "strategy.devices", st.devices, "must be >= 1")
    require(st.num_nodes >= 1, "strategy.num_nodes", st.num_nodes, "must be >= 1")
    require(st.precision in _PRECISIONS, "strategy.precision", st.precision, f"must be one of {_PRECISIONS}")
    if st.accelerator == "cpu":
        require(
            st.precision in ("32-true", "32", "bf16-mixed"),
            "strategy.precision",
            st.precision,
            "CPU runs support 32-true or bf16-mixed",
        )

    require(st.kind in _STRATEGIES, "strategy.kind", st.kind, f"must be one of {_STRATEGIES}")
    if st.kind == "deepspeed":
        require(st.zero_stage in (2, 3), "strategy.zero_stage", st.zero_stage, "must be 2 or 3")
        require(
            st.precision in ("32-true", "32", "bf16-mixed"),
            "strategy.precision",
            st.precision,
            "DeepSpeed runs take 32-true or bf16-mixed (ZeRO keeps fp32 master weights)",
        )
        require(
            not st.offload_parameters or st.zero_stage == 3,
            "strategy.offload_parameters",
            st.offload_parameters,
            "needs strategy.zero_stage=3 (only ZeRO-3 partitions the weights)",
        )
        require(
            st.reduce_bucket_size > 0 and st.allgather_bucket_size > 0,
            "strategy.reduce_bucket_size",
            st.reduce_bucket_size,
            "bucket sizes must be > 0",
        )
        if cfg.optim.name == "muon_adamw":
            # DeepSpeed orthogonalises inside ZeRO with its own fixed Muon step (Nesterov, 5 Newton-Schulz
            # steps, lr x sqrt(max(1, out/in))); other settings would silently differ from torch's Muon.
            o = cfg.optim
            for key, value, want in (
                ("optim.muon_adjust_lr", o.muon_adjust_lr, "original"),
                ("optim.muon_nesterov", o.muon_nesterov, True),
                ("optim.muon_ns_steps", o.muon_ns_steps, 5),
            ):
                require(value == want, key, value, f"must be {want!r} under strategy=deepspeed (DeepSpeed's Muon)")

    par = cfg.parallel
    require(
        par.mode in ("none", "ulysses", "ring", "hybrid"),
        "parallel.mode",
        par.mode,
        "must be one of none, ulysses, ring, hybrid",
    )
    require(par.size >= 1, "parallel.size", par.size, "must be >= 1")
    world = st.devices * st.num_nodes
    require(world % par.size == 0, "parallel.size", par.size, f"must divide the world size {world} (devices x nodes)")
    if par.mode in ("ulysses", "hybrid"):
        ulysses = par.size if par.mode == "ulysses" else par.ulysses_degree
        heads = cfg.model.transformer.arch.num_attention_heads
        require(
            heads % ulysses == 0,
            "parallel.size" if par.mode == "ulysses" else "parallel.ulysses_degree",
            ulysses,
            f"must divide the DiT's {heads} attention heads (Ulysses splits heads)",
        )
    if par.mode == "hybrid":
        require(
            par.size % par.ulysses_degree == 0,
            "parallel.ulysses_degree",
            par.ulysses_degree,
            f"must divide parallel.size={par.size}",
        )
    if par.mode in ("ring", "hybrid"):
        require(
            st.accelerator in ("gpu", "cuda"),
            "parallel.mode",
            par.mode,
            "ring attention needs CUDA (yunchang's ring kernels call flash attention); use ulysses on CPU",
        )

    lg = cfg.logger
    require(lg.name in _LOGGERS, "logger.name", lg.name, f"must be one of {_LOGGERS}")
    require(lg.mode in _WANDB_MODES, "logger.mode", lg.mode, f"must be one of {_WANDB_MODES}")

    lp = cfg.loop
    require(lp.max_steps >= 1, "loop.max_steps", lp.max_steps, "must be >= 1")
    require(lp.log_every_n_steps >= 1, "loop.log_every_n_steps", lp.log_every_n_steps, "must be >= 1")
    require(lp.progress_every_n_steps >= 1, "loop.progress_every_n_steps", lp.progress_every_n_steps, "must be >= 1")
    require(lp.progress_every_s > 0, "loop.progress_every_s", lp.progress_every_s, "must be > 0")
    require(
        lp.checkpoint_every_n_steps >= 1,
        "loop.checkpoint_every_n_steps",
        lp.checkpoint_every_n_steps,
        "must be >= 1",
    )
    require(lp.keep_last_checkpoints >= 1, "loop.keep_last_checkpoints", lp.keep_last_checkpoints, "must be >= 1")
    require(
        lp.accumulate_grad_batches >= 1,
        "loop.accumulate_grad_batches",
        lp.accumulate_grad_batches,
        "must be >= 1",
    )
    bins = list(lp.loss_t_bins)
    require(
        len(bins) >= 2 and all(lo < hi for lo, hi in zip(bins, bins[1:])) and bins[0] >= 0.0 and bins[-1] <= 1.0,
        "loop.loss_t_bins",
        bins,
        "must be at least 2 strictly increasing edges in [0, 1]",
    )
    if cfg.resume not in (None, "auto"):
        require(
            Path(cfg.resume).is_file() or (Path(cfg.resume) / "latest").is_file(),
            "resume",
            cfg.resume,
            "must be an existing training checkpoint (a .ckpt file, or a DeepSpeed checkpoint folder) or auto",
        )

    validate_validation(cfg)


def validate_validation(cfg: TrainConfig) -> None:
    """Rules of ``validation.*`` (:class:`trainer.config.schema.ValidationConfig`).

    Raises:
        ConfigError: Naming the first key that breaks a rule.
    """
    v = cfg.validation
    require(v.every_n_steps >= 0, "validation.every_n_steps", v.every_n_steps, "must be >= 0 (0 turns it off)")
    require(v.num_clips >= 0, "validation.num_clips", v.num_clips, "must be >= 0 (0 skips sampling)")
    require(v.loss_batches >= 0, "validation.loss_batches", v.loss_batches, "must be >= 0 (0 skips the loss)")
    require(v.sample_steps >= 1, "validation.sample_steps", v.sample_steps, "must be >= 1")
    for q in v.timestep_quantiles:
        require(0.0 < q < 1.0, "validation.timestep_quantiles", list(v.timestep_quantiles), "each must be in (0, 1)")
    require(
        len(set(v.timestep_quantiles)) == len(v.timestep_quantiles),
        "validation.timestep_quantiles",
        list(v.timestep_quantiles),
        "must not repeat a value (each is logged as val/loss_t<q>)",
    )
    # validation.modes and validation.v2v_mask name eval's sampling modes and masks: eval.validation checks them.
    require(v.audio_guidance >= 0, "validation.audio_guidance", v.audio_guidance, "must be >= 0")
    require(v.text_guidance >= 0, "validation.text_guidance", v.text_guidance, "must be >= 0")
    if v.every_n_steps == 0:
        return
    require(
        bool(v.shards),
        "validation.shards",
        v.shards,
        "is required when validation.every_n_steps > 0 (held-out shards in the data_prep schema)",
    )
    require(
        v.loss_batches > 0 or v.num_clips > 0,
        "validation.loss_batches",
        v.loss_batches,
        "validation.loss_batches and validation.num_clips are both 0: nothing to validate",
    )
    require(
        v.loss_batches == 0 or bool(v.timestep_quantiles),
        "validation.timestep_quantiles",
        list(v.timestep_quantiles),
        "must not be empty when validation.loss_batches > 0",
    )
    require(
        not (cfg.strategy.kind == "deepspeed" and cfg.strategy.zero_stage == 3),
        "validation.every_n_steps",
        v.every_n_steps,
        "validation under DeepSpeed ZeRO-3 is not supported yet (ZeRO-3 partitions the frozen VAE and text "
        "encoder too, whose forwards, with cached captions, differ between ranks); use zero_stage=2 or fsdp",
    )
    require(
        cfg.parallel.size == 1,
        "validation.every_n_steps",
        v.every_n_steps,
        f"validation with sequence parallelism is not supported yet (parallel.size={cfg.parallel.size}); "
        "set validation.every_n_steps=0 or parallel=none",
    )
