"""The plain model of a training stage, built from its config or loaded from one of its checkpoints.

The training module, evaluation (``eval.run``, the lip-sync benchmark) and validation all take the model a
stage trains as a :class:`~trainer.model.talking_head.TalkingHeadModel` built here: the base from the
``model`` config, the adapter initialised from ``stage.adapter_init``, LoRA injected as ``stage.lora`` says,
and which weights train. Loading a checkpoint builds the same model and copies the checkpoint's trainable
tensors over it; no Lightning object is made.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from trainer.checkpoints import (
    check_adapter_config,
    read_adapter_source,
    read_lora_source,
    read_training_checkpoint,
)
from trainer.config.compose import config_from_container
from trainer.config.schema import TrainConfig
from trainer.model.audio_adapter import adapter_parameter_names, load_audio_adapter_state_dict
from trainer.model.lora import LoRAReport, add_lora, load_lora_weights
from trainer.model.talking_head import TalkingHeadModel

log = logging.getLogger(__name__)

# The training module holds its plain model as ``model``, so its state-dict keys carry this prefix.
MODEL_ATTRIBUTE = "model."


def build_stage_model(cfg: TrainConfig) -> tuple[TalkingHeadModel, LoRAReport | None]:
    """The model of ``cfg``'s stage, with the stage's weights (and only those) set to train.

    Args:
        cfg: A validated training config.

    Returns:
        ``(model, LoRA report or None)``, with ``requires_grad`` on the stage's trainable weights: every DiT
        weight for the base stage, the adapter and/or LoRA for stages 1 and 2.

    Raises:
        FileNotFoundError, ValueError: ``stage.adapter_init`` is missing or holds another adapter shape.
    """
    stage = cfg.stage
    model = TalkingHeadModel.from_config(cfg.model, cfg.audio, with_adapter=stage.audio_adapter)
    transformer = model.dit.transformer
    # Full fine-tuning (the base stage) trains every DiT weight; other stages start from a frozen DiT.
    transformer.requires_grad_(stage.train_transformer)
    if stage.adapter_init is not None:
        tensors, saved_cfg, source = read_adapter_source(stage.adapter_init)
        check_adapter_config(saved_cfg, model.dit.adapter_config, source)
        load_audio_adapter_state_dict(transformer, tensors, source)
        log.info("audio adapter initialised from %s", source)
    report = None
    if stage.lora.enabled:
        # peft freezes everything but LoRA when it injects adapters, so this comes first.
        report = add_lora(transformer, stage.lora)
        log.info("%s", report.format())
        if not stage.restore_lora:
            tensors, source = read_lora_source(stage.adapter_init)
            if tensors is None:
                raise ValueError(f"stage.restore_lora=false continues a LoRA, but {source} holds none")
            load_lora_weights(transformer, tensors, stage.lora, source)
            log.info("LoRA continued from %s", source)
    if stage.train_adapter:
        names = set(adapter_parameter_names(transformer))
        for n, p in transformer.named_parameters():
            if n in names:
                p.requires_grad_(True)
    return model, report


def base_stage_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its stage replaced by the bare base: the DiT as ``model`` loads it, no adapter, no LoRA."""
    stage = dataclasses.replace(
        cfg.stage,
        name="base",
        audio_adapter=False,
        train_transformer=False,
        train_adapter=False,
        adapter_init=None,
        fresh_adapter=False,
        restore_lora=True,
        p_audio=0.0,
        lora=dataclasses.replace(cfg.stage.lora, enabled=False),
    )
    return dataclasses.replace(cfg, stage=stage)


def read_checkpoint(checkpoint: str | Path) -> tuple[dict, TrainConfig]:
    """A training checkpoint and the config stored in it (checked against today's schema).

    Raises:
        FileNotFoundError: No such checkpoint.
        ValueError: Not a talkdit checkpoint, or its config no longer fits (names the key).
    """
    ckpt = read_training_checkpoint(checkpoint)
    return ckpt, config_from_container(ckpt["talkdit"]["config"], source=str(checkpoint))


def load_trained_model(
    checkpoint: str | Path, device: str | torch.device = "cpu", loaded: tuple[dict, TrainConfig] | None = None
) -> tuple[TalkingHeadModel, TrainConfig]:
    """The model a checkpoint trained, with its trained tensors, frozen and in eval mode, and its config.

    The config stored in the checkpoint rebuilds the model (its weight files must be where the run found
    them); the checkpoint's trainable tensors (adapter, LoRA, or every DiT weight of a base-stage run) are then
    copied over it.

    Args:
        checkpoint: A training checkpoint (file, or DeepSpeed folder).
        device: Where the model goes.
        loaded: :func:`read_checkpoint`'s result when the caller has read it already.

    Raises:
        FileNotFoundError: The checkpoint, or a weight file its config names, is missing.
        ValueError: The checkpoint holds tensors the model its config describes does not have, or lacks some
            the stage trains.
    """
    ckpt, cfg = loaded or read_checkpoint(checkpoint)
    model, _ = build_stage_model(cfg)
    state = {k.removeprefix(MODEL_ATTRIBUTE): v for k, v in ckpt["state_dict"].items()}
    unexpected = set(state) - set(model.state_dict())
    if unexpected:
        raise ValueError(f"{checkpoint}: tensors the model does not have: {sorted(unexpected)[:5]}")
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in state]
    if missing:  # evaluating would silently use the untrained initial values of these
        raise ValueError(f"{checkpoint} lacks {len(missing)} of the stage's trained tensors (first: {missing[0]})")
    model.load_state_dict(state, strict=False)
    model.requires_grad_(False)
    return model.to(device).eval(), cfg


__all__ = ["base_stage_config", "build_stage_model", "load_trained_model", "read_checkpoint"]
