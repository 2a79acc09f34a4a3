"""Export of a training checkpoint into the files inference code loads.

``python -m trainer.export checkpoint=<ckpt> output_dir=<dir> [overwrite=true]`` writes::

    <dir>/audio_adapter.safetensors      audio projection + per-block audio cross-attention
    <dir>/audio_adapter.json             the adapter's shape (AudioAdapterConfig), provenance, the audio feature
                                         settings and the training settings inference repeats
    <dir>/lora/adapter_model.safetensors peft format (keys ``base_model.model.….lora_A.weight``)   [stage 2]
    <dir>/lora/adapter_config.json       peft ``LoraConfig``                                          [stage 2]
    <dir>/pytorch_lora_weights.safetensors  diffusers format (keys ``transformer.….lora_A.weight``,
                                         alpha = rank: the alpha/rank scale is folded into lora_B)   [stage 2]
    <dir>/transformer/, vae/, text_encoder/, tokenizer/, scheduler/, model_index.json
                                         a diffusers folder in the LTX-Video layout                   [base]

Adapter and LoRA files come from the checkpoint alone (no backbone is loaded). A stage that trained every
DiT weight (the base stage) is exported as a whole diffusers folder: its DiT from the checkpoint, the frozen
VAE and text encoder from the folders the run loaded them from. Everything is written into a temporary
folder next to ``output_dir`` and renamed into place, so an export is complete or absent.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import MISSING

from trainer.atomic import atomic_dir
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config, register_schema

# torch, peft and diffusers load inside the functions that use them, so that `--help`, `--cfg job` and bad
# options answer without them.
if TYPE_CHECKING:
    import torch
    from peft import LoraConfig

LORA_DIR = "lora"
PEFT_WEIGHTS = "adapter_model.safetensors"
DIFFUSERS_WEIGHTS = "pytorch_lora_weights.safetensors"
_ADAPTER_NAME_INFIX = ".default."


@dataclass
class ExportConfig:
    """Command-line options of ``python -m trainer.export``."""

    checkpoint: str = MISSING  # a talkdit training checkpoint (.ckpt file, or a DeepSpeed checkpoint folder)
    output_dir: str = MISSING  # folder to create (written as a temporary folder, then renamed)
    overwrite: bool = False  # replace an existing output_dir


def register() -> None:
    """Register :class:`ExportConfig` as the config ``export`` (composed like every entry point's)."""
    register_schema("export", ExportConfig)


COMMAND = Command(
    module="trainer.export",
    config_name="export",
    synopsis="checkpoint=<ckpt> output_dir=<dir> [overwrite=true]",
    summary="""Export a training checkpoint into the files inference code loads: the audio adapter
(audio_adapter.safetensors + .json) and, for stage 2, the LoRA in peft format (lora/) and in diffusers format
(pytorch_lora_weights.safetensors); a base-stage checkpoint (every DiT weight trained) as a diffusers folder in
the LTX-Video layout. The output is complete or absent.""",
    examples=(
        "python -m trainer.export checkpoint=runs/edityourself_stage1/<run>/checkpoints/last.ckpt output_dir=exports/1",
    ),
    register=register,
)


def lora_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LoRA tensors in peft's adapter-name-free naming (``….to_q.lora_A.weight``)."""
    out = {}
    for k, v in state.items():
        if ".lora_A." in k or ".lora_B." in k:
            out[k.replace(_ADAPTER_NAME_INFIX, ".")] = v.contiguous()
    return out


def peft_config_from_meta(lora_meta: dict) -> LoraConfig:
    """Peft ``LoraConfig`` of the trained LoRA."""
    from peft import LoraConfig

    return LoraConfig(
        r=int(lora_meta["rank"]),
        lora_alpha=float(lora_meta["alpha"]),
        lora_dropout=float(lora_meta["dropout"]),
        target_modules=lora_meta["target_modules"],
    )


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """Write what a training checkpoint trained, in the formats inference code loads.

    The adapter (and LoRA, for stage 2) files come from the checkpoint alone. A checkpoint of a stage that
    trained every DiT weight (``stage.train_transformer``, the base stage) is written as a diffusers folder
    in the LTX-Video layout (:func:`write_base_folder`).

    Args:
        checkpoint: Training checkpoint path.
        output_dir: Folder to create.
        overwrite: Replace ``output_dir`` if it exists.

    Returns:
        Name → path of every file or folder written.

    Raises:
        FileExistsError: ``output_dir`` exists and ``overwrite`` is false.
        ValueError: The checkpoint is not a talkdit checkpoint or holds nothing to export.
    """
    from trainer.checkpoints import adapter_state, read_training_checkpoint, transformer_state
    from trainer.model.base_folder import write_base_folder

    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"output_dir {output_dir} exists; pass overwrite=true to replace it")
    ckpt = read_training_checkpoint(checkpoint)
    meta = ckpt["talkdit"]
    state = transformer_state(ckpt)
    adapter = adapter_state(state)
    full_dit = bool(meta["config"]["stage"].get("train_transformer", False))
    if not adapter and not full_dit:
        raise ValueError(f"{checkpoint} holds no audio adapter tensors")

    with atomic_dir(output_dir, overwrite=overwrite) as tmp:
        files: dict[str, Path] = {}
        if full_dit:
            dit = {k: v for k, v in state.items() if k not in adapter}
            files.update(write_base_folder(tmp, dit, meta["config"]["model"], f"{checkpoint}"))
        if adapter:
            files.update(_write_adapter(tmp, adapter, meta, checkpoint, ckpt))
        lora = lora_tensors(state)
        if lora:
            if meta.get("lora") is None:
                raise ValueError(f"{checkpoint} has LoRA tensors but no LoRA settings in its metadata")
            files.update(_write_lora(tmp, lora, meta["lora"]))
    return {name: output_dir / path.relative_to(tmp) for name, path in files.items()}


def _write_adapter(tmp: Path, adapter: dict, meta: dict, checkpoint: str | Path, ckpt: dict) -> dict[str, Path]:
    from safetensors.torch import save_file

    from trainer.checkpoints import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    files = {"audio_adapter": tmp / ADAPTER_WEIGHTS, "audio_adapter_config": tmp / ADAPTER_CONFIG}
    save_file(
        {k: v.contiguous() for k, v in adapter.items()},
        str(files["audio_adapter"]),
        metadata={"format": "pt", "talkdit": "audio_adapter"},
    )
    provenance = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "global_step": int(ckpt.get("global_step", -1)),
        "config_fingerprint": meta.get("config_fingerprint"),
        "model": meta["config"]["model"]["name"],
        "stage": meta["config"]["stage"]["name"],
    }
    description = {
        "format_version": 1,
        "adapter": meta["adapter"],
        "provenance": provenance,
        "audio": meta["config"]["audio"],
        "training": training_settings(meta["config"]),
    }
    files["audio_adapter_config"].write_text(json.dumps(description, indent=2))
    return files


def training_settings(config: dict) -> dict:
    """What inference should repeat from the training run (``eval.dub`` takes its defaults from it).

    Args:
        config: The run's resolved config as a plain dict.

    Returns:
        The flow-time law's location, the identity reference count, the V2V mask rule, the caption of
        uncaptioned clips and the trained resolution range.
    """
    data, objective = config["data"], config["objective"]
    return {
        "timestep_loc": objective["timestep_loc"],
        "num_reference_frames": objective["num_reference_frames"],
        "mask": data["mask"],
        "mask_padding": data["mask_padding"],
        "mask_alpha": data["mask_alpha"],
        "caption": data["default_caption"],
        "min_megapixels": data["min_megapixels"],
        "max_megapixels": data["max_megapixels"],
    }


def _write_lora(tmp: Path, lora: dict[str, torch.Tensor], lora_meta: dict) -> dict[str, Path]:
    from diffusers.loaders import LTXVideoLoraLoaderMixin
    from safetensors.torch import save_file

    peft_cfg = peft_config_from_meta(lora_meta)
    lora_dir = tmp / LORA_DIR
    peft_cfg.save_pretrained(str(lora_dir))
    files = {"lora_config": lora_dir / "adapter_config.json", "lora_peft": lora_dir / PEFT_WEIGHTS}
    save_file({f"base_model.model.{k}": v for k, v in lora.items()}, str(files["lora_peft"]), metadata={"format": "pt"})
    # Loaders of diffusers-format files often ignore alpha (diffusers' own model-level loader does
    # when handed a file), so the file carries alpha = rank with the scale folded into lora_B.
    scale = peft_cfg.lora_alpha / peft_cfg.r
    folded = {k: (v * scale).contiguous() if ".lora_B." in k else v for k, v in lora.items()}
    meta_cfg = peft_config_from_meta({**lora_meta, "alpha": peft_cfg.r})
    LTXVideoLoraLoaderMixin.save_lora_weights(
        save_directory=str(tmp),
        transformer_lora_layers=folded,
        weight_name=DIFFUSERS_WEIGHTS,
        transformer_lora_adapter_metadata=meta_cfg.to_dict(),
    )
    files["lora_diffusers"] = tmp / DIFFUSERS_WEIGHTS
    return files


def _export(overrides: list[str]) -> int:
    register()
    opts: ExportConfig = load_config("export", overrides)
    files = export_checkpoint(opts.checkpoint, opts.output_dir, opts.overwrite)
    for name, path in files.items():
        print(f"{name}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``key=value`` arguments); bad arguments or checkpoints exit with status 2."""
    return run_command(COMMAND, argv, _export, errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
