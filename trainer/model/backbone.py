"""Loading the LTX-Video DiT: diffusers folder, LTX single-file checkpoint, or an explicit random init.

The weights always go through diffusers' own classes and key converter; talkdit adds only the checks
that turn a wrong file into an error that says which file, which key and what was expected.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import LTXVideoTransformer3DModel
from diffusers.loaders.single_file_utils import convert_ltx_transformer_checkpoint_to_diffusers

from trainer.config.schema import LTXTransformerArch, TransformerConfig
from trainer.model.weights import load_safetensors_checked, load_strict, require_file

LTX_SOURCE_HINT = (
    "LTX-Video 0.9.7 weights come from https://huggingface.co/Lightricks/LTX-Video-0.9.7-dev "
    "(diffusers folder) or its single-file ltxv-13b-0.9.7-dev.safetensors"
)


def build_transformer(arch: LTXTransformerArch) -> LTXVideoTransformer3DModel:
    """Instantiate the diffusers DiT for ``arch`` with diffusers' default initialisation."""
    return LTXVideoTransformer3DModel(**asdict(arch))


def _check_folder_arch(folder: Path, arch: LTXTransformerArch) -> None:
    config_file = require_file(folder / "config.json", LTX_SOURCE_HINT)
    found = json.loads(config_file.read_text())
    diffs = [
        f"{k}: file has {found[k]!r}, config expects {v!r}"
        for k, v in asdict(arch).items()
        if k in found and found[k] != v
    ]
    if diffs:
        raise ValueError(
            f"{config_file} describes another LTX architecture than model.transformer.arch: " + "; ".join(diffs)
        )


def load_transformer(cfg: TransformerConfig) -> LTXVideoTransformer3DModel:
    """Load (or explicitly randomly initialise) the LTX DiT described by ``cfg``.

    Args:
        cfg: Source, path and expected architecture.

    Returns:
        The DiT in float32, eval mode, all parameters frozen (stages unfreeze what they train).

    Raises:
        FileNotFoundError: The folder, config or weight file is missing (names the file and its source).
        ValueError: The weights belong to another architecture (names the differing keys and shapes).
    """
    if cfg.source == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            model = build_transformer(cfg.arch)
    elif cfg.source == "diffusers":
        folder = Path(cfg.path) / cfg.subfolder if cfg.subfolder else Path(cfg.path)
        if not folder.is_dir():
            raise FileNotFoundError(f"LTX transformer folder {folder} does not exist; {LTX_SOURCE_HINT}")
        _check_folder_arch(folder, cfg.arch)
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            raise FileNotFoundError(f"no diffusion_pytorch_model*.safetensors in {folder}; {LTX_SOURCE_HINT}")
        model = LTXVideoTransformer3DModel.from_pretrained(
            folder, local_files_only=True, torch_dtype=torch.float32, low_cpu_mem_usage=False
        )
    elif cfg.source == "single_file":
        path = require_file(Path(cfg.path), LTX_SOURCE_HINT)
        state = load_safetensors_checked(path)
        state = {k: v for k, v in state.items() if not k.startswith("vae.")}
        state = convert_ltx_transformer_checkpoint_to_diffusers(state)
        model = build_transformer(cfg.arch)
        layout = "model.transformer.arch (another model size or not an LTX-Video checkpoint)"
        load_strict(model, state, path, layout)
    else:
        raise ValueError(f"model.transformer.source={cfg.source!r}: expected random, diffusers or single_file")
    model.requires_grad_(False)
    model.eval()
    return model
