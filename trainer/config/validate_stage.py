"""Rules on ``stage``: what a training stage trains, where it starts from, and its condition probabilities."""

from __future__ import annotations

import re
from pathlib import Path

from trainer.config.errors import ConfigError
from trainer.config.rules import positive, probability, require
from trainer.config.schema import StageConfig


def validate_stage(s: StageConfig) -> None:
    """Check the stage's rules (the adapter/LoRA/full fine-tuning mix, its sources, its probabilities).

    Raises:
        ConfigError: Naming the first ``stage.*`` key that breaks a rule.
    """
    for name in ("p_audio", "p_ff", "p_v2v", "p_id", "p_frame_ref", "p_ref_drop"):
        probability(f"stage.{name}", getattr(s, name))
    for key, value in (("stage.p_ref_drop", s.p_ref_drop > 0), ("stage.ref_follows_audio", s.ref_follows_audio)):
        require(
            not value or s.p_id > 0,
            key,
            getattr(s, key.split(".")[1]),
            "drops identity references, which stage.p_id = 0 never adds; set stage.p_id > 0 or turn it off",
        )
    require(
        s.train_transformer or s.train_adapter or s.lora.enabled,
        "stage.train_adapter",
        s.train_adapter,
        "a stage must train the DiT (stage.train_transformer), the audio adapter, the LoRA, or a mix",
    )
    require(
        not (s.train_transformer and s.lora.enabled),
        "stage.lora.enabled",
        s.lora.enabled,
        "must be false when stage.train_transformer trains every DiT weight (a LoRA on top adds nothing)",
    )
    if not s.audio_adapter:
        why = "must be {} without an audio adapter (stage.audio_adapter=false)"
        require(s.p_audio == 0.0, "stage.p_audio", s.p_audio, why.format(0))
        require(not s.train_adapter, "stage.train_adapter", s.train_adapter, why.format("false"))
        require(s.adapter_init is None, "stage.adapter_init", s.adapter_init, why.format("null"))
        require(not s.lora.enabled, "stage.lora.enabled", s.lora.enabled, why.format("false"))
    if s.train_adapter and not s.lora.enabled and not s.train_transformer:
        require(
            s.p_audio > 0,
            "stage.p_audio",
            s.p_audio,
            "must be > 0 when only the audio adapter trains: with audio always off it gets no gradient",
        )
    if s.fresh_adapter:
        require(s.lora.enabled, "stage.fresh_adapter", s.fresh_adapter, "is for a LoRA stage (stage.lora.enabled)")
        require(s.adapter_init is None, "stage.fresh_adapter", s.fresh_adapter, "contradicts stage.adapter_init")
        require(s.train_adapter, "stage.fresh_adapter", s.fresh_adapter, "needs stage.train_adapter=true")
    if s.lora.enabled:
        require(
            s.adapter_init is not None or s.fresh_adapter,
            "stage.adapter_init",
            s.adapter_init,
            "a LoRA stage (stage 2) must start from a stage-1 audio adapter: set stage.adapter_init to the "
            "stage-1 export folder, its audio_adapter.safetensors or a stage-1 checkpoint (or "
            "stage.fresh_adapter=true to train a new adapter with the LoRA, AnyExpress stage I)",
        )
        positive("stage.lora.rank", s.lora.rank)
        positive("stage.lora.alpha", s.lora.alpha)
        require(0.0 <= s.lora.dropout < 1.0, "stage.lora.dropout", s.lora.dropout, "must be in [0, 1)")
        try:
            re.compile(s.lora.target_modules)
        except re.error as err:
            raise ConfigError("stage.lora.target_modules", s.lora.target_modules, f"invalid regex: {err}") from err
    if not s.restore_lora:
        require(
            s.lora.enabled and s.adapter_init is not None,
            "stage.restore_lora",
            s.restore_lora,
            "false continues the LoRA of stage.adapter_init: it needs stage.lora.enabled and stage.adapter_init",
        )
    if s.adapter_init is not None:
        require(Path(s.adapter_init).exists(), "stage.adapter_init", s.adapter_init, "does not exist")
