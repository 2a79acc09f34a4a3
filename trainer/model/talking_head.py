"""The talking-head model as one plain ``nn.Module``: the DiT (with audio adapter and LoRA), the VAE, the text encoder.

It is what inference runs (the sampler, ``eval.dub``) and is built either from a training config
(:meth:`TalkingHeadModel.from_config`, the way the training module builds its parts) or from a base diffusers
folder plus the files ``trainer.export`` writes (:meth:`TalkingHeadModel.from_exports`). No training state,
no distributed logic: parallelism and objectives are applied from outside.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path

import torch
from torch import nn

from trainer.config.schema import (
    AudioConfig,
    LTXTransformerArch,
    ModelConfig,
    TextEncoderConfig,
    TransformerConfig,
    VAEConfig,
)
from trainer.model.audio_adapter import AudioAdapterConfig, load_audio_adapter_state_dict
from trainer.model.backbone import LTX_SOURCE_HINT, load_transformer
from trainer.model.dit import TalkingHeadDiT
from trainer.model.exported import (
    ExportedWeights,
    WeightsMismatchError,
    adapter_mismatch,
    attach_lora,
    lora_mismatch,
    read_exported_weights,
)
from trainer.model.text_encoder import TextEncoder
from trainer.model.vae import encode_posterior, load_vae, normalize_latents, sample_posterior
from trainer.model.weights import require_file

log = logging.getLogger(__name__)

BASE_HINT = (
    "expected a diffusers folder in the LTX-Video layout (transformer/, vae/, text_encoder/, tokenizer/): "
    + LTX_SOURCE_HINT
    + ", or talkdit's tiny base (`make demo` writes it to demo_out/data/tiny_base/<corpus>/base_model)"
)
# LTX-Video pipelines pad prompts to 128 tokens; a base folder's tokenizer may record its own length.
DEFAULT_TEXT_LENGTH = 128
_NO_LENGTH = 10**6  # transformers' "no limit" sentinel is about 1e30


def base_model_config(base: str | Path, text_max_length: int | None = None) -> ModelConfig:
    """The ``model`` config that loads a base diffusers folder (architecture read from its ``transformer/config.json``).

    Args:
        base: The folder.
        text_max_length: Prompt padding length; ``None`` takes the tokenizer's ``model_max_length`` when it
            records one, else 128 (LTX-Video's).

    Raises:
        FileNotFoundError: The folder or its transformer config is missing (names the file and the layout).
    """
    base = Path(base)
    if not base.is_dir():
        raise FileNotFoundError(f"base={base}: no such folder; {BASE_HINT}")
    config = require_file(base / "transformer" / "config.json", BASE_HINT)
    found = json.loads(config.read_text())
    arch = LTXTransformerArch(**{f.name: found[f.name] for f in fields(LTXTransformerArch) if f.name in found})
    if text_max_length is None:
        tok = base / "tokenizer" / "tokenizer_config.json"
        recorded = json.loads(tok.read_text()).get("model_max_length") if tok.is_file() else None
        text_max_length = int(recorded) if recorded and recorded < _NO_LENGTH else DEFAULT_TEXT_LENGTH
    vae = VAEConfig(source="diffusers", path=str(base), subfolder="vae")
    vae_config = base / "vae" / "config.json"
    if vae_config.is_file():  # the compression its save_pretrained recorded (absent: LTX-Video's, the defaults)
        recorded_vae = json.loads(vae_config.read_text())
        vae.spatial_compression = int(recorded_vae.get("spatial_compression_ratio") or vae.spatial_compression)
        vae.temporal_compression = int(recorded_vae.get("temporal_compression_ratio") or vae.temporal_compression)
    return ModelConfig(
        name=f"base:{base.name}",
        transformer=TransformerConfig(source="diffusers", path=str(base), subfolder="transformer", arch=arch),
        vae=vae,
        text_encoder=TextEncoderConfig(source="diffusers", path=str(base), max_length=int(text_max_length)),
    )


class TalkingHeadModel(nn.Module):
    """DiT + VAE + text encoder of one talking-head model, in eval mode and frozen.

    Args:
        dit: The DiT with its audio adapter (and LoRA, if any).
        vae: The LTX VAE the DiT's latents belong to.
        text_encoder: The caption encoder the DiT cross-attends to.

    Raises:
        ValueError: The parts do not belong together (latent channels, caption width).
    """

    def __init__(self, dit: TalkingHeadDiT, vae: nn.Module, text_encoder: TextEncoder):
        super().__init__()
        arch = dit.transformer.config
        if vae.config.latent_channels != arch.in_channels:
            raise ValueError(
                f"the VAE has {vae.config.latent_channels} latent channels, the DiT reads {arch.in_channels}: "
                "the DiT and the VAE must come from the same model"
            )
        if text_encoder.hidden_size != arch.caption_channels:
            raise ValueError(
                f"text encoder width {text_encoder.hidden_size} != the DiT's caption_channels {arch.caption_channels}"
            )
        self.dit = dit
        self.vae = vae
        self.text_encoder = text_encoder
        self.lora_modules: list[str] = []
        self.requires_grad_(False)
        self.eval()

    @property
    def adapter_config(self) -> AudioAdapterConfig | None:
        """The audio adapter's shape (``None`` for a base DiT)."""
        return self.dit.adapter_config

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent token side (32 for LTX)."""
        return int(self.vae.spatial_compression_ratio)

    @property
    def temporal_compression(self) -> int:
        """Video frames per latent frame after frame 0 (8 for LTX)."""
        return int(self.vae.temporal_compression_ratio)

    @property
    def device(self) -> torch.device:
        """Where the DiT's weights are."""
        return next(self.dit.parameters()).device

    @torch.no_grad()
    def encode_latents(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised clip latents ``[B, C, T, h, w]`` and reference latents ``[B, C, R, h, w]`` of a batch.

        Uses the shard's cached posterior when the batch carries it (``batch["latents"]``); otherwise encodes
        ``frames`` ``[B, F, H, W, 3]`` and ``ref_frames`` ``[B, R, H, W, 3]`` with the frozen VAE (each reference
        frame on its own, one latent frame each). Posterior samples are drawn from ``gen``.
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

    @classmethod
    def from_config(cls, model: ModelConfig, audio: AudioConfig, with_adapter: bool = True) -> TalkingHeadModel:
        """Build every part as a training config describes it (fresh adapter, no LoRA)."""
        dit = TalkingHeadDiT.from_config(model, audio, with_adapter)
        return cls(dit, load_vae(model.vae), TextEncoder(model.text_encoder))

    @classmethod
    def from_exports(
        cls,
        base: str | Path,
        weights: str | Path | ExportedWeights,
        lora: str = "auto",
        text_max_length: int | None = None,
    ) -> TalkingHeadModel:
        """The base diffusers folder with an export's audio adapter and LoRA on it.

        The adapter's shape and every LoRA module are checked against the base before any weight is loaded.

        Args:
            base: Diffusers folder in the LTX-Video layout (13B, 2B or talkdit's tiny base).
            weights: Export folder (``trainer.export``'s output) or what :func:`read_exported_weights` read.
            lora: Which LoRA file: ``auto``, ``diffusers``, ``peft`` or ``none``.
            text_max_length: Prompt padding length (see :func:`base_model_config`).

        Raises:
            FileNotFoundError: A folder or file is missing (named, with where it comes from).
            WeightsMismatchError: The export does not fit the base (names the keys or fields).
        """
        model_cfg = base_model_config(base, text_max_length)
        exported = weights if isinstance(weights, ExportedWeights) else read_exported_weights(weights, lora)
        where = f"weights={exported.folder} do not fit base={base}"
        problems = adapter_mismatch(exported.adapter_config, model_cfg.transformer.arch)
        if problems:
            raise WeightsMismatchError(f"{where}: audio_adapter.json describes another DiT ({'; '.join(problems)})")
        transformer = load_transformer(model_cfg.transformer)
        if exported.lora is not None:
            problems = lora_mismatch(transformer, exported.lora)
            if problems:
                raise WeightsMismatchError(f"{where}: {exported.lora_source.name}: {'; '.join(problems)}")
        dit = TalkingHeadDiT(transformer, exported.adapter_config)
        try:
            load_audio_adapter_state_dict(
                transformer, exported.adapter, str(exported.folder / "audio_adapter.safetensors")
            )
        except ValueError as err:
            raise WeightsMismatchError(f"{where}: {err}") from err
        modules = attach_lora(transformer, exported.lora) if exported.lora is not None else []
        if modules:
            log.info("LoRA from %s on %d modules", exported.lora_source, len(modules))
        model = cls(dit, load_vae(model_cfg.vae), TextEncoder(model_cfg.text_encoder))
        model.lora_modules = modules
        return model
