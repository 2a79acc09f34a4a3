"""Writing a whole DiT, with the VAE and text encoder it was trained with, as a diffusers folder.

The layout is that of ``Lightricks/LTX-Video-0.9.7-dev``, so the folder loads through the same loading code
and config keys as the 13B model (``model.transformer.source=diffusers``)::

    model_index.json
    transformer/config.json, diffusion_pytorch_model.safetensors
    vae/config.json, diffusion_pytorch_model.safetensors
    text_encoder/config.json, model.safetensors
    tokenizer/...
    scheduler/scheduler_config.json

It is what a checkpoint of the base stage (every DiT weight trained) exports to: talkdit's own tiny
pretrained base, or a fully fine-tuned LTX-Video.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import diffusers
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
from safetensors.torch import save_file

from trainer.config.schema import LTXTransformerArch, TextEncoderConfig, VAEConfig
from trainer.model.text_encoder import TextEncoder
from trainer.model.vae import load_vae
from trainer.model.weights import state_mismatch

TRANSFORMER_WEIGHTS = "diffusion_pytorch_model.safetensors"
# The scheduler LTX-Video 0.9.5+ folders ship (diffusers' conversion script); talkdit's sampler uses its own
# shifted flow times, the file is there so that diffusers' LTX pipelines load the folder as they load LTX's.
_SCHEDULER = {
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
}


def write_base_folder(folder: Path, dit_state: dict[str, torch.Tensor], model: dict, source: str) -> dict[str, Path]:
    """Write a diffusers folder of a trained DiT and the frozen components its run used.

    Args:
        folder: Destination (an empty folder, e.g. the temporary folder of an atomic export).
        dit_state: Every weight of ``LTXVideoTransformer3DModel`` (keys relative to the transformer).
        model: The run's ``model`` config as a plain dict (``transformer.arch``, ``vae``, ``text_encoder``).
        source: The checkpoint's name, for error messages.

    Returns:
        Name → path of each component folder and of ``model_index.json``.

    Raises:
        ValueError: The tensors do not form the configured DiT (names the first differing key).
    """
    arch = LTXTransformerArch(**model["transformer"]["arch"])
    with torch.device("meta"):
        skeleton = LTXVideoTransformer3DModel(**asdict(arch))
    problem = state_mismatch(skeleton.state_dict(), dit_state)
    if problem:
        raise ValueError(f"{source} does not hold a whole DiT of model.transformer.arch: {problem}")
    out = {name: folder / name for name in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")}
    skeleton.save_config(out["transformer"])
    save_file({k: v.contiguous() for k, v in dit_state.items()}, str(out["transformer"] / TRANSFORMER_WEIGHTS))
    _write_vae(VAEConfig(**model["vae"]), out["vae"])
    _write_text_encoder(TextEncoderConfig(**model["text_encoder"]), out["text_encoder"], out["tokenizer"])
    FlowMatchEulerDiscreteScheduler(**_SCHEDULER).save_config(out["scheduler"])
    index = {
        "_class_name": "LTXConditionPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", _tokenizer_class(out["tokenizer"])],
        "transformer": ["diffusers", "LTXVideoTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLLTXVideo"],
    }
    out["model_index"] = folder / "model_index.json"
    out["model_index"].write_text(json.dumps(index, indent=2) + "\n")
    return out


def _write_vae(cfg: VAEConfig, dest: Path) -> None:
    """Copy the run's VAE folder, or save the VAE it built (random or single-file)."""
    if cfg.source == "diffusers":
        shutil.copytree(Path(cfg.path) / cfg.subfolder if cfg.subfolder else Path(cfg.path), dest)
    else:
        load_vae(cfg).save_pretrained(dest, safe_serialization=True)


def _write_text_encoder(cfg: TextEncoderConfig, enc_dest: Path, tok_dest: Path) -> None:
    """Copy the run's text encoder and tokenizer folders, or save the (random) encoder it built."""
    if cfg.source == "diffusers":
        root = Path(cfg.path)
        shutil.copytree(root / cfg.subfolder if cfg.subfolder else root, enc_dest)
        shutil.copytree(root / cfg.tokenizer_subfolder if cfg.tokenizer_subfolder else root, tok_dest)
    else:
        TextEncoder(cfg).save_pretrained(enc_dest, tok_dest)


def _tokenizer_class(folder: Path) -> str:
    config = folder / "tokenizer_config.json"
    found = json.loads(config.read_text()).get("tokenizer_class") if config.is_file() else None
    return found or "T5TokenizerFast"
