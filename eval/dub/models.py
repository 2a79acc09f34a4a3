"""The networks of a dub and the training settings its export records.

A dub runs the model assembled from the base folder and the exports
(:meth:`trainer.model.talking_head.TalkingHeadModel.from_exports`) and the Whisper encoder the adapter was
trained on; the export's ``audio_adapter.json`` also carries the training run's sampling settings (timestep
shift, references, mask rule, caption, size), with the schema's defaults for exports that predate them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.config import check_size
from eval.dub.config import DubConfig
from eval.dub.video import DubInputError
from trainer.model.exported import ExportedWeights, WeightsMismatchError, read_exported_weights
from trainer.model.talking_head import TalkingHeadModel
from trainer.model.whisper_features import WhisperArch, WhisperFeatureExtractor, WhisperFeaturesConfig

# Used when an export predates the training settings in audio_adapter.json (the schema's defaults).
_TRAINING_DEFAULTS = {
    "timestep_loc": 2.05,
    "num_reference_frames": 6,
    "mask": "enclosing",
    "mask_padding": 0.1,
    "mask_alpha": 0.75,
    "caption": "a person talking to the camera",
    "min_megapixels": 0.25,
}


@dataclass
class Models:
    """The networks a dub runs (built once, reusable across dubs with the same weights).

    Attributes:
        model: DiT with the exported adapter and LoRA, VAE and text encoder (eval mode, frozen).
        whisper: The encoder of the speech features the adapter was trained on.
        exported: The export's files as read (adapter config, training settings, LoRA).
    """

    model: TalkingHeadModel
    whisper: WhisperFeatureExtractor
    exported: ExportedWeights


def training_settings(exported: ExportedWeights) -> dict:
    """The training run's sampling-relevant settings from the export (schema defaults where it has none)."""
    return {**_TRAINING_DEFAULTS, **exported.meta.get("training", {})}


def whisper_config(cfg: DubConfig, exported: ExportedWeights) -> WhisperFeaturesConfig:
    """The Whisper encoder of the speech features: ``cfg.whisper``, else the one the export records.

    Raises:
        DubInputError: Neither says which encoder.
    """
    if cfg.whisper is not None:
        return cfg.whisper
    recorded = exported.meta.get("audio", {}).get("encoder")
    if recorded is None:
        raise DubInputError(
            f"weights={exported.folder}: audio_adapter.json does not record the Whisper encoder of the training "
            "features (an older export); pass whisper.path=<openai/whisper-small folder> or the encoder it used"
        )
    return WhisperFeaturesConfig(**{**recorded, "arch": WhisperArch(**recorded.get("arch", {}))})


def load_models(cfg: DubConfig, exported: ExportedWeights | None = None) -> Models:
    """Assemble the inference model from the base folder and the exports, and the Whisper encoder.

    Args:
        cfg: Options (``weights``, ``base``, ``lora``, ``whisper``, ``device``).
        exported: The export already read (else read from ``cfg.weights``).

    Raises:
        FileNotFoundError: A folder or file is missing (named).
        WeightsMismatchError: The exports do not fit the base, or the Whisper encoder not the adapter.
        DubInputError: The export does not say which Whisper encoder made its features.
    """
    exported = exported or read_exported_weights(cfg.weights, cfg.lora)
    model = TalkingHeadModel.from_exports(cfg.base, exported).to(cfg.device)
    whisper = WhisperFeatureExtractor.from_config(whisper_config(cfg, exported))
    adapter = exported.adapter_config
    if (whisper.num_hidden_states, whisper.hidden_size) != (adapter.feature_layers, adapter.feature_dim):
        raise WeightsMismatchError(
            f"whisper encoder {whisper.source} gives {whisper.num_hidden_states} x {whisper.hidden_size} features; "
            f"the adapter in weights={exported.folder} reads {adapter.feature_layers} x {adapter.feature_dim} "
            "(audio_adapter.json feature_layers x feature_dim): use the encoder the weights were trained with"
        )
    return Models(model, whisper, exported)


def model_size(cfg: DubConfig, settings: dict, spatial: int) -> tuple[int, int]:
    """``(height, width)`` of the crop: ``cfg.size``, else the square of the training run's smallest area.

    Args:
        cfg: The dub's options.
        settings: The training run's settings (:func:`training_settings`).
        spatial: The VAE's pixels per token side; both sides are multiples of it.

    Raises:
        ConfigError: ``size`` is not a multiple of ``spatial``.
    """
    check_size(cfg.size, spatial)
    if cfg.size is not None:
        return int(cfg.size[0]), int(cfg.size[1])
    side = max(spatial, int(round(np.sqrt(float(settings["min_megapixels"]) * 1e6) / spatial)) * spatial)
    return side, side
