"""Structured (Hydra) configuration of the Muon + AdamW optimiser, its schedule and gradient clipping.

The recipe (EditYourself §4.1, Table 1): Muon for matrix-shaped parameters, AdamW for the rest,
``lr_muon = 100 × lr_adam`` with ``lr_adam = 1e-5`` in stage 1 and ``1e-4`` in stage 2.
"""

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self

from trainer.config.errors import ConfigError

OPTIMIZER_NAMES = ("muon_adamw", "adamw")
SCHEDULES = ("constant", "cosine", "linear")
MUON_ADJUST_LR = ("original", "match_rms_adamw")
LORA_OPTIMIZERS = ("muon", "adamw")

# Each pattern is a regex searched (``re.search``) in the full parameter name.
DEFAULT_ADAMW_PATTERNS: tuple[str, ...] = (
    # The DiT's patchify input layer: maps latent channels (128 in LTX) to the hidden size; an input
    # layer, not a hidden matrix (Muon's own guidance keeps embeddings/first layers on AdamW).
    r"(^|\.)proj_in\.",
    # The DiT's output head back to latent channels: Muon's guidance keeps output layers on AdamW.
    r"(^|\.)proj_out\.",
    # Timestep embedding MLP and the AdaLN-single modulation linear; they read a sinusoidal embedding of
    # one scalar and set every block's shift/scale, so their updates should stay element-wise small.
    r"time_embed\.",
    # Caption (T5) projection: an input layer reading raw text-encoder features.
    r"caption_projection\.",
    # Per-block AdaLN modulation tables (also caught by the "not an nn.Linear weight" rule; listed so a
    # future refactor into a Linear does not silently move them to Muon).
    r"scale_shift_table",
    # The first layer of the audio projection reads raw stacked Whisper features (B·C = 13·768 inputs):
    # an input layer, so AdamW.
    r"audio_projection\.in_proj\.",
    # The learned window position tensor P ∈ R^{W×B×C} (Eq. 4): an additive embedding, never a matrix.
    r"audio_projection\.pos_embed",
)


@dataclass
class OptimConfig:
    """Optimiser, learning-rate schedule and clipping settings (the ``optim`` Hydra group).

    Attributes:
        name: ``"muon_adamw"`` (Muon for hidden 2-D ``nn.Linear`` weights, AdamW for the rest) or
            ``"adamw"`` (every trainable parameter on AdamW; the ablation baseline).
        lr_adam: AdamW base learning rate (paper: 1e-5 in stage 1, 1e-4 in stage 2).
        lr_muon_ratio: Muon base learning rate as a multiple of ``lr_adam`` (paper: 100).
        adam_betas: AdamW ``(beta1, beta2)``, each in [0, 1).
        adam_eps: AdamW denominator epsilon (> 0).
        adam_weight_decay: AdamW decoupled weight decay. Applied only to ``nn.Linear``/convolution
            weights routed to AdamW; biases, norms, embeddings, position tensors and modulation tables are
            never decayed (they go to a separate no-decay group).
        muon_weight_decay: Muon decoupled weight decay. torch's Muon multiplies it by the *group* lr
            (``lr_muon``, i.e. 100 × ``lr_adam``, before the shape adjustment): the same per-step shrink as
            AdamW needs ``muon_weight_decay = adam_weight_decay / lr_muon_ratio``.
        muon_momentum: Muon momentum ``mu`` in [0, 1) (torch keeps an EMA buffer ``lerp(grad, 1 - mu)``).
        muon_nesterov: Nesterov-style momentum for Muon (the update orthogonalises
            ``lerp(grad, buf, mu)``).
        muon_ns_steps: Newton–Schulz iterations (torch requires 1 ≤ steps < 100; 5 is Keller Jordan's).
        muon_adjust_lr: torch Muon's ``adjust_lr_fn``. The orthogonalised update of an ``out×in`` matrix
            has singular values ≈ 1, so its element RMS is ``1/sqrt(max(out, in))``. ``"original"``
            (Keller Jordan) multiplies the lr by ``sqrt(max(1, out/in))``, giving an element RMS of about
            ``lr/sqrt(in)`` (≈ lr/64 for the 13B DiT's 4096-wide inputs), while an AdamW step has an
            element RMS of roughly 0.2–1 × lr. That is why Muon under ``"original"`` needs a learning rate
            about two orders of magnitude above AdamW's: the paper's ``lr_muon = 100 × lr_adam`` rule.
            ``"match_rms_adamw"`` (Moonshot) multiplies by ``0.2·sqrt(max(out, in))`` instead, pinning
            the RMS at 0.2 × lr so Muon can reuse AdamW's lr; with it ``lr_muon_ratio`` should be about 1,
            not 100 (``validate`` warns).
        warmup_steps: Linear warm-up length in optimiser steps, from lr 0 to the base lr (≥ 0).
        schedule: After warm-up: ``"constant"``, ``"cosine"`` or ``"linear"`` decay to
            ``min_lr_ratio × base lr`` at ``total_steps``.
        min_lr_ratio: Final lr as a fraction of the base lr for the decaying schedules, in [0, 1].
        total_steps: Decay horizon in optimiser steps; required by ``cosine``/``linear`` and larger than
            ``warmup_steps``. After it the lr stays at ``min_lr_ratio × base lr``.
        grad_clip_norm: Max global L2 norm of the AdamW parameters' gradients; ``None`` disables clipping.
            Muon gradients are never clipped (see ``trainer.optim.clipping``).
        adamw_patterns: Regexes (``re.search`` on the full parameter name) forcing matching parameters to
            AdamW even when they are 2-D ``nn.Linear`` weights. Defaults: ``DEFAULT_ADAMW_PATTERNS``.
        lora_optimizer: Optimiser for LoRA ``lora_A``/``lora_B`` matrices: ``"muon"`` or ``"adamw"``.
    """

    name: str = "muon_adamw"
    lr_adam: float = 1e-5
    lr_muon_ratio: float = 100.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    adam_weight_decay: float = 0.0
    muon_weight_decay: float = 0.0
    muon_momentum: float = 0.95
    muon_nesterov: bool = True
    muon_ns_steps: int = 5
    muon_adjust_lr: str = "original"
    warmup_steps: int = 0
    schedule: str = "constant"
    min_lr_ratio: float = 0.0
    total_steps: int | None = None
    grad_clip_norm: float | None = 1.0
    adamw_patterns: list[str] = field(default_factory=lambda: list(DEFAULT_ADAMW_PATTERNS))
    lora_optimizer: str = "muon"

    @property
    def lr_muon(self) -> float:
        """Muon base learning rate, ``lr_muon_ratio × lr_adam``."""
        return self.lr_muon_ratio * self.lr_adam

    def validate(self) -> Self:
        """Check every field; raise :class:`ConfigError` naming the offending key, its value and the rule.

        Returns:
            ``self``, so that ``cfg = OptimConfig(...).validate()`` reads naturally.

        Raises:
            ConfigError: On the first invalid field (key ``optim.<field>``).
        """
        _one_of("name", self.name, OPTIMIZER_NAMES)
        _positive("lr_adam", self.lr_adam)
        _positive("lr_muon_ratio", self.lr_muon_ratio)
        if len(self.adam_betas) != 2:
            raise ConfigError("optim.adam_betas", list(self.adam_betas), "must hold exactly two values")
        for i, beta in enumerate(self.adam_betas):
            if not (_finite(beta) and 0.0 <= beta < 1.0):
                raise ConfigError(f"optim.adam_betas[{i}]", beta, "must be in [0, 1)")
        _positive("adam_eps", self.adam_eps)
        _non_negative("adam_weight_decay", self.adam_weight_decay)
        _non_negative("muon_weight_decay", self.muon_weight_decay)
        if not (_finite(self.muon_momentum) and 0.0 <= self.muon_momentum < 1.0):
            raise ConfigError("optim.muon_momentum", self.muon_momentum, "must be in [0, 1)")
        if isinstance(self.muon_ns_steps, bool) or not isinstance(self.muon_ns_steps, int):
            raise ConfigError("optim.muon_ns_steps", self.muon_ns_steps, "must be an integer")
        if not 1 <= self.muon_ns_steps < 100:
            raise ConfigError("optim.muon_ns_steps", self.muon_ns_steps, "must be in [1, 100)")
        _one_of("muon_adjust_lr", self.muon_adjust_lr, MUON_ADJUST_LR)
        _int_at_least("warmup_steps", self.warmup_steps, 0)
        _one_of("schedule", self.schedule, SCHEDULES)
        if not (_finite(self.min_lr_ratio) and 0.0 <= self.min_lr_ratio <= 1.0):
            raise ConfigError("optim.min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        if self.total_steps is not None:
            _int_at_least("total_steps", self.total_steps, 1)
        if self.schedule in ("cosine", "linear"):
            if self.total_steps is None:
                raise ConfigError(
                    "optim.total_steps", None, f"required by optim.schedule={self.schedule!r} (it is the decay horizon)"
                )
            if self.total_steps <= self.warmup_steps:
                raise ConfigError(
                    "optim.total_steps",
                    self.total_steps,
                    f"must be greater than optim.warmup_steps={self.warmup_steps} for schedule {self.schedule!r}",
                )
        if self.grad_clip_norm is not None:
            _positive("grad_clip_norm", self.grad_clip_norm)
        for i, pattern in enumerate(self.adamw_patterns):
            if not isinstance(pattern, str):
                raise ConfigError(f"optim.adamw_patterns[{i}]", pattern, "must be a string regex")
            try:
                re.compile(pattern)
            except re.error as err:
                raise ConfigError(f"optim.adamw_patterns[{i}]", pattern, f"invalid regex ({err})") from err
        _one_of("lora_optimizer", self.lora_optimizer, LORA_OPTIMIZERS)
        if self.name == "muon_adamw" and self.muon_adjust_lr == "match_rms_adamw" and self.lr_muon_ratio > 10:
            # Not an error (someone may mean it), but almost surely a 100× too large Muon step.
            warnings.warn(
                f"optim.muon_adjust_lr='match_rms_adamw' already rescales Muon to AdamW's update RMS; "
                f"with optim.lr_muon_ratio={self.lr_muon_ratio} Muon steps are ~{self.lr_muon_ratio:g}× "
                "larger than AdamW's. The paper's 100× rule goes with muon_adjust_lr='original'.",
                stacklevel=2,
            )
        return self

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Build from a plain mapping (e.g. a resolved ``DictConfig``), rejecting unknown keys.

        Args:
            values: key → value; missing keys take the dataclass defaults.

        Raises:
            ConfigError: A key is not a field of ``OptimConfig``.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            key = unknown[0]
            raise ConfigError(f"optim.{key}", values[key], f"unknown key(s) {unknown}; known keys: {sorted(known)}")
        kwargs = dict(values)
        for key in ("adam_betas", "adamw_patterns"):
            if key in kwargs and kwargs[key] is not None:
                kwargs[key] = list(kwargs[key])
        return cls(**kwargs)


def as_optim_config(cfg: OptimConfig | Mapping[str, Any]) -> OptimConfig:
    """Accept an ``OptimConfig``, a structured or plain ``DictConfig``, or a dict; return a validated config.

    Args:
        cfg: the ``optim`` config node.

    Returns:
        A validated ``OptimConfig`` (a new object unless ``cfg`` already was one).
    """
    if isinstance(cfg, OptimConfig):
        return cfg.validate()
    try:  # OmegaConf is a Hydra dependency; keep this module importable without it.
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover
        DictConfig = ()  # noqa: N806
    if DictConfig and isinstance(cfg, DictConfig):
        obj = OmegaConf.to_object(cfg)
        if isinstance(obj, OptimConfig):
            return obj.validate()
        cfg = obj
    if not isinstance(cfg, Mapping):
        raise TypeError(f"optim config must be an OptimConfig or a mapping, got {type(cfg).__name__}")
    return OptimConfig.from_mapping(cfg).validate()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(key: str, value: Any) -> None:
    if not (_finite(value) and value > 0):
        raise ConfigError(f"optim.{key}", value, "must be a finite number > 0")


def _non_negative(key: str, value: Any) -> None:
    if not (_finite(value) and value >= 0):
        raise ConfigError(f"optim.{key}", value, "must be a finite number >= 0")


def _int_at_least(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"optim.{key}", value, f"must be an integer >= {minimum}")


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"optim.{key}", value, f"must be one of {list(allowed)}")
