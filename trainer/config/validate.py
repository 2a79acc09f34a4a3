"""Rules on the training configuration that types cannot express.

All of them run before any model, dataset or run directory is touched, so a bad override costs
seconds, not a queued multi-node job.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.config.errors import ConfigError
from trainer.config.schema import COMPONENT_SOURCES, TrainConfig

_STRATEGY_ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
_LOGGERS = ("csv", "wandb")
_WANDB_MODES = ("offline", "online", "disabled")
_STRATEGIES = ("ddp", "fsdp", "deepspeed")
_PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "16-mixed")


def _require(cond: bool, key: str, value: object, rule: str) -> None:
    if not cond:
        raise ConfigError(key, value, rule)


def _probability(key: str, value: float) -> None:
    _require(0.0 <= value <= 1.0, key, value, "must be a probability in [0, 1]")


def _positive(key: str, value: float) -> None:
    _require(value > 0, key, value, "must be > 0")


def _component_source(prefix: str, source: str, path: str | None) -> None:
    _require(source in COMPONENT_SOURCES, f"{prefix}.source", source, f"must be one of {COMPONENT_SOURCES}")
    if source == "random":
        return
    _require(
        bool(path),
        f"{prefix}.path",
        path,
        f"is required when {prefix}.source={source} (a diffusers folder or LTX single-file checkpoint "
        "of Lightricks/LTX-Video-0.9.7-dev)",
    )
    _require(Path(path).exists(), f"{prefix}.path", path, "does not exist")


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
    _require(
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
    _component_source("model.transformer", m.transformer.source, m.transformer.path)
    _component_source("model.vae", m.vae.source, m.vae.path)
    _require(
        m.text_encoder.source in ("random", "diffusers"),
        "model.text_encoder.source",
        m.text_encoder.source,
        "must be 'random' or 'diffusers'",
    )
    if m.text_encoder.source != "random":
        _component_source("model.text_encoder", m.text_encoder.source, m.text_encoder.path)
    arch = m.transformer.arch
    _require(
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
        _positive(f"model.transformer.arch.{name}", getattr(arch, name))
    _require(
        arch.out_channels == arch.in_channels,
        "model.transformer.arch.out_channels",
        arch.out_channels,
        f"must equal in_channels ({arch.in_channels}): the DiT predicts a velocity in latent space",
    )
    if m.vae.source == "random":
        lat = m.vae.arch.get("latent_channels")
        _require(
            lat == arch.in_channels,
            "model.vae.arch.latent_channels",
            lat,
            f"must equal model.transformer.arch.in_channels ({arch.in_channels})",
        )
    _require(
        m.vae.spatial_compression == 32,
        "model.vae.spatial_compression",
        m.vae.spatial_compression,
        "LTX-Video's VAE compresses 32x32 pixels into one token",
    )
    _require(
        m.vae.temporal_compression == 8,
        "model.vae.temporal_compression",
        m.vae.temporal_compression,
        "LTX-Video's VAE compresses 8 frames into one latent frame",
    )
    _positive("model.text_encoder.max_length", m.text_encoder.max_length)

    a = cfg.audio
    for name in ("feature_layers", "feature_dim", "feature_rate", "window", "adapter_dim"):
        _positive(f"audio.{name}", getattr(a, name))

    s = cfg.stage
    for name in ("p_audio", "p_ff", "p_v2v", "p_id", "p_frame_ref", "p_ref_drop"):
        _probability(f"stage.{name}", getattr(s, name))
    for key, value in (("stage.p_ref_drop", s.p_ref_drop > 0), ("stage.ref_follows_audio", s.ref_follows_audio)):
        _require(
            not value or s.p_id > 0,
            key,
            getattr(s, key.split(".")[1]),
            "drops identity references, which stage.p_id = 0 never adds; set stage.p_id > 0 or turn it off",
        )
    _require(
        s.train_transformer or s.train_adapter or s.lora.enabled,
        "stage.train_adapter",
        s.train_adapter,
        "a stage must train the DiT (stage.train_transformer), the audio adapter, the LoRA, or a mix",
    )
    _require(
        not (s.train_transformer and s.lora.enabled),
        "stage.lora.enabled",
        s.lora.enabled,
        "must be false when stage.train_transformer trains every DiT weight (a LoRA on top adds nothing)",
    )
    if not s.audio_adapter:
        why = "must be {} without an audio adapter (stage.audio_adapter=false)"
        _require(s.p_audio == 0.0, "stage.p_audio", s.p_audio, why.format(0))
        _require(not s.train_adapter, "stage.train_adapter", s.train_adapter, why.format("false"))
        _require(s.adapter_init is None, "stage.adapter_init", s.adapter_init, why.format("null"))
        _require(not s.lora.enabled, "stage.lora.enabled", s.lora.enabled, why.format("false"))
    if s.train_adapter and not s.lora.enabled and not s.train_transformer:
        _require(
            s.p_audio > 0,
            "stage.p_audio",
            s.p_audio,
            "must be > 0 when only the audio adapter trains: with audio always off it gets no gradient",
        )
    if s.fresh_adapter:
        _require(s.lora.enabled, "stage.fresh_adapter", s.fresh_adapter, "is for a LoRA stage (stage.lora.enabled)")
        _require(s.adapter_init is None, "stage.fresh_adapter", s.fresh_adapter, "contradicts stage.adapter_init")
        _require(s.train_adapter, "stage.fresh_adapter", s.fresh_adapter, "needs stage.train_adapter=true")
    if s.lora.enabled:
        _require(
            s.adapter_init is not None or s.fresh_adapter,
            "stage.adapter_init",
            s.adapter_init,
            "a LoRA stage (stage 2) must start from a stage-1 audio adapter: set stage.adapter_init to the "
            "stage-1 export folder, its audio_adapter.safetensors or a stage-1 checkpoint (or "
            "stage.fresh_adapter=true to train a new adapter with the LoRA, AnyExpress stage I)",
        )
        _positive("stage.lora.rank", s.lora.rank)
        _positive("stage.lora.alpha", s.lora.alpha)
        _require(0.0 <= s.lora.dropout < 1.0, "stage.lora.dropout", s.lora.dropout, "must be in [0, 1)")
        try:
            re.compile(s.lora.target_modules)
        except re.error as err:
            raise ConfigError("stage.lora.target_modules", s.lora.target_modules, f"invalid regex: {err}") from err
    if not s.restore_lora:
        _require(
            s.lora.enabled and s.adapter_init is not None,
            "stage.restore_lora",
            s.restore_lora,
            "false continues the LoRA of stage.adapter_init: it needs stage.lora.enabled and stage.adapter_init",
        )
    if s.adapter_init is not None:
        _require(Path(s.adapter_init).exists(), "stage.adapter_init", s.adapter_init, "does not exist")

    o = cfg.objective
    _require(o.timestep_scale > 0, "objective.timestep_scale", o.timestep_scale, "must be > 0")
    _require(o.knn_candidates >= 1, "objective.knn_candidates", o.knn_candidates, "must be >= 1 (1 disables KNN)")
    _require(o.contrastive_lambda >= 0, "objective.contrastive_lambda", o.contrastive_lambda, "must be >= 0")
    _require(o.num_reference_frames >= 1, "objective.num_reference_frames", o.num_reference_frames, "must be >= 1")

    cfg.optim.validate()

    d = cfg.data
    validate_frames("data.max_frames", d.max_frames, cfg.model.vae.temporal_compression)
    latent_frames = (d.max_frames - 1) // cfg.model.vae.temporal_compression + 1
    _require(
        cfg.stage.p_frame_ref == 0 or latent_frames >= 3,
        "stage.p_frame_ref",
        cfg.stage.p_frame_ref,
        f"needs clips of at least 3 latent frames (two references around a generated one); data.max_frames="
        f"{d.max_frames} gives {latent_frames}",
    )
    _require(d.tokens_per_batch >= 1, "data.tokens_per_batch", d.tokens_per_batch, "must be >= 1")
    _require(
        0 < d.min_megapixels <= d.max_megapixels,
        "data.min_megapixels",
        d.min_megapixels,
        "must be > 0 and <= data.max_megapixels",
    )
    _require(d.num_workers >= 0, "data.num_workers", d.num_workers, "must be >= 0")
    _require(d.shuffle_buffer >= 1, "data.shuffle_buffer", d.shuffle_buffer, "must be >= 1")
    _require(d.mask in ("enclosing", "adaptive"), "data.mask", d.mask, "must be 'enclosing' or 'adaptive'")
    _require(0 <= d.mask_alpha <= 1, "data.mask_alpha", d.mask_alpha, "must be in [0, 1]")
    _require(d.mask_padding >= 0, "data.mask_padding", d.mask_padding, "must be >= 0")
    _require(0 <= d.max_skipped_fraction <= 1, "data.max_skipped_fraction", d.max_skipped_fraction, "in [0, 1]")
    from trainer.data.buckets import Compression, buckets_for, parse_aspect

    _require(0 <= d.bucket_tolerance < 0.5, "data.bucket_tolerance", d.bucket_tolerance, "must be in [0, 0.5)")
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
    _require(
        st.accelerator in _STRATEGY_ACCELERATORS,
        "strategy.accelerator",
        st.accelerator,
        f"must be one of {_STRATEGY_ACCELERATORS}",
    )
    _require(st.devices >= 1, "strategy.devices", st.devices, "must be >= 1")
    _require(st.num_nodes >= 1, "strategy.num_nodes", st.num_nodes, "must be >= 1")
    _require(st.precision in _PRECISIONS, "strategy.precision", st.precision, f"must be one of {_PRECISIONS}")
    if st.accelerator == "cpu":
        _require(
            st.precision in ("32-true", "32", "bf16-mixed"),
            "strategy.precision",
            st.precision,
            "CPU runs support 32-true or bf16-mixed",
        )

    _require(st.kind in _STRATEGIES, "strategy.kind", st.kind, f"must be one of {_STRATEGIES}")
    if st.kind == "deepspeed":
        _require(st.zero_stage in (2, 3), "strategy.zero_stage", st.zero_stage, "must be 2 or 3")
        _require(
            st.precision in ("32-true", "32", "bf16-mixed"),
            "strategy.precision",
            st.precision,
            "DeepSpeed runs take 32-true or bf16-mixed (ZeRO keeps fp32 master weights)",
        )
        _require(
            not st.offload_parameters or st.zero_stage == 3,
            "strategy.offload_parameters",
            st.offload_parameters,
            "needs strategy.zero_stage=3 (only ZeRO-3 partitions the weights)",
        )
        _require(
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
                _require(value == want, key, value, f"must be {want!r} under strategy=deepspeed (DeepSpeed's Muon)")

    par = cfg.parallel
    _require(
        par.mode in ("none", "ulysses", "ring", "hybrid"),
        "parallel.mode",
        par.mode,
        "must be one of none, ulysses, ring, hybrid",
    )
    _require(par.size >= 1, "parallel.size", par.size, "must be >= 1")
    world = st.devices * st.num_nodes
    _require(world % par.size == 0, "parallel.size", par.size, f"must divide the world size {world} (devices x nodes)")
    if par.mode in ("ulysses", "hybrid"):
        ulysses = par.size if par.mode == "ulysses" else par.ulysses_degree
        heads = cfg.model.transformer.arch.num_attention_heads
        _require(
            heads % ulysses == 0,
            "parallel.size" if par.mode == "ulysses" else "parallel.ulysses_degree",
            ulysses,
            f"must divide the DiT's {heads} attention heads (Ulysses splits heads)",
        )
    if par.mode == "hybrid":
        _require(
            par.size % par.ulysses_degree == 0,
            "parallel.ulysses_degree",
            par.ulysses_degree,
            f"must divide parallel.size={par.size}",
        )
    if par.mode in ("ring", "hybrid"):
        _require(
            st.accelerator in ("gpu", "cuda"),
            "parallel.mode",
            par.mode,
            "ring attention needs CUDA (yunchang's ring kernels call flash attention); use ulysses on CPU",
        )

    lg = cfg.logger
    _require(lg.name in _LOGGERS, "logger.name", lg.name, f"must be one of {_LOGGERS}")
    _require(lg.mode in _WANDB_MODES, "logger.mode", lg.mode, f"must be one of {_WANDB_MODES}")

    lp = cfg.loop
    _require(lp.max_steps >= 1, "loop.max_steps", lp.max_steps, "must be >= 1")
    _require(lp.log_every_n_steps >= 1, "loop.log_every_n_steps", lp.log_every_n_steps, "must be >= 1")
    _require(lp.progress_every_n_steps >= 1, "loop.progress_every_n_steps", lp.progress_every_n_steps, "must be >= 1")
    _require(lp.progress_every_s > 0, "loop.progress_every_s", lp.progress_every_s, "must be > 0")
    _require(
        lp.checkpoint_every_n_steps >= 1,
        "loop.checkpoint_every_n_steps",
        lp.checkpoint_every_n_steps,
        "must be >= 1",
    )
    _require(lp.keep_last_checkpoints >= 1, "loop.keep_last_checkpoints", lp.keep_last_checkpoints, "must be >= 1")
    _require(
        lp.accumulate_grad_batches >= 1,
        "loop.accumulate_grad_batches",
        lp.accumulate_grad_batches,
        "must be >= 1",
    )
    bins = list(lp.loss_t_bins)
    _require(
        len(bins) >= 2 and all(lo < hi for lo, hi in zip(bins, bins[1:])) and bins[0] >= 0.0 and bins[-1] <= 1.0,
        "loop.loss_t_bins",
        bins,
        "must be at least 2 strictly increasing edges in [0, 1]",
    )
    if cfg.resume not in (None, "auto"):
        _require(
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
    _require(v.every_n_steps >= 0, "validation.every_n_steps", v.every_n_steps, "must be >= 0 (0 turns it off)")
    _require(v.num_clips >= 0, "validation.num_clips", v.num_clips, "must be >= 0 (0 skips sampling)")
    _require(v.loss_batches >= 0, "validation.loss_batches", v.loss_batches, "must be >= 0 (0 skips the loss)")
    _require(v.sample_steps >= 1, "validation.sample_steps", v.sample_steps, "must be >= 1")
    for q in v.timestep_quantiles:
        _require(0.0 < q < 1.0, "validation.timestep_quantiles", list(v.timestep_quantiles), "each must be in (0, 1)")
    _require(
        len(set(v.timestep_quantiles)) == len(v.timestep_quantiles),
        "validation.timestep_quantiles",
        list(v.timestep_quantiles),
        "must not repeat a value (each is logged as val/loss_t<q>)",
    )
    # validation.modes and validation.v2v_mask name eval's sampling modes and masks: eval.validation checks them.
    _require(v.audio_guidance >= 0, "validation.audio_guidance", v.audio_guidance, "must be >= 0")
    _require(v.text_guidance >= 0, "validation.text_guidance", v.text_guidance, "must be >= 0")
    if v.every_n_steps == 0:
        return
    _require(
        bool(v.shards),
        "validation.shards",
        v.shards,
        "is required when validation.every_n_steps > 0 (held-out shards in the data_prep schema)",
    )
    _require(
        v.loss_batches > 0 or v.num_clips > 0,
        "validation.loss_batches",
        v.loss_batches,
        "validation.loss_batches and validation.num_clips are both 0: nothing to validate",
    )
    _require(
        v.loss_batches == 0 or bool(v.timestep_quantiles),
        "validation.timestep_quantiles",
        list(v.timestep_quantiles),
        "must not be empty when validation.loss_batches > 0",
    )
    _require(
        not (cfg.strategy.kind == "deepspeed" and cfg.strategy.zero_stage == 3),
        "validation.every_n_steps",
        v.every_n_steps,
        "validation under DeepSpeed ZeRO-3 is not supported yet (ZeRO-3 partitions the frozen VAE and text "
        "encoder too, whose forwards, with cached captions, differ between ranks); use zero_stage=2 or fsdp",
    )
    _require(
        cfg.parallel.size == 1,
        "validation.every_n_steps",
        v.every_n_steps,
        f"validation with sequence parallelism is not supported yet (parallel.size={cfg.parallel.size}); "
        "set validation.every_n_steps=0 or parallel=none",
    )
