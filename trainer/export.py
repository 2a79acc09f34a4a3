"""Export of a training checkpoint into the files inference code loads.

``python -m trainer.export checkpoint=<ckpt> output_dir=<dir> [overwrite=true]`` writes::

    <dir>/audio_adapter.safetensors      audio projection + per-block audio cross-attention
    <dir>/audio_adapter.json             the adapter's shape (AudioAdapterConfig) and provenance
    <dir>/lora/adapter_model.safetensors peft format (keys ``base_model.model.….lora_A.weight``)   [stage 2]
    <dir>/lora/adapter_config.json       peft ``LoraConfig``                                          [stage 2]
    <dir>/pytorch_lora_weights.safetensors  diffusers format (keys ``transformer.….lora_A.weight``,
                                         alpha = rank: the alpha/rank scale is folded into lora_B)   [stage 2]

Only the checkpoint is read (no backbone is loaded). Everything is written into a temporary folder
next to ``output_dir`` and renamed into place, so an export is complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import MISSING

from trainer.atomic import current_umask
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config, register_schema

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
(pytorch_lora_weights.safetensors). Only the checkpoint is read; the output is complete or absent.""",
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
    """Write the adapter (and LoRA, for stage 2) files of a training checkpoint.

    Args:
        checkpoint: Training checkpoint path.
        output_dir: Folder to create.
        overwrite: Replace ``output_dir`` if it exists.

    Returns:
        Name → path of every file written.

    Raises:
        FileExistsError: ``output_dir`` exists and ``overwrite`` is false.
        ValueError: The checkpoint is not a talkdit checkpoint or holds no adapter.
    """
    from diffusers.loaders import LTXVideoLoraLoaderMixin
    from safetensors.torch import save_file

    from trainer.checkpoints import (
        ADAPTER_CONFIG,
        ADAPTER_WEIGHTS,
        adapter_state,
        read_training_checkpoint,
        transformer_state,
    )

    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"output_dir {output_dir} exists; pass overwrite=true to replace it")
    ckpt = read_training_checkpoint(checkpoint)
    meta = ckpt["talkdit"]
    state = transformer_state(ckpt)
    adapter = adapter_state(state)
    if not adapter:
        raise ValueError(f"{checkpoint} holds no audio adapter tensors")

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
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
        files["audio_adapter_config"].write_text(
            json.dumps({"format_version": 1, "adapter": meta["adapter"], "provenance": provenance}, indent=2)
        )
        lora = lora_tensors(state)
        if lora:
            if meta.get("lora") is None:
                raise ValueError(f"{checkpoint} has LoRA tensors but no LoRA settings in its metadata")
            peft_cfg = peft_config_from_meta(meta["lora"])
            lora_dir = tmp / LORA_DIR
            peft_cfg.save_pretrained(str(lora_dir))
            files["lora_config"] = lora_dir / "adapter_config.json"
            files["lora_peft"] = lora_dir / PEFT_WEIGHTS
            save_file(
                {f"base_model.model.{k}": v for k, v in lora.items()},
                str(files["lora_peft"]),
                metadata={"format": "pt"},
            )
            # Loaders of diffusers-format files often ignore alpha (diffusers' own model-level loader does
            # when handed a file), so the file carries alpha = rank with the scale folded into lora_B.
            scale = peft_cfg.lora_alpha / peft_cfg.r
            folded = {k: (v * scale).contiguous() if ".lora_B." in k else v for k, v in lora.items()}
            meta_cfg = peft_config_from_meta({**meta["lora"], "alpha": peft_cfg.r})
            LTXVideoLoraLoaderMixin.save_lora_weights(
                save_directory=str(tmp),
                transformer_lora_layers=folded,
                weight_name=DIFFUSERS_WEIGHTS,
                transformer_lora_adapter_metadata=meta_cfg.to_dict(),
            )
            files["lora_diffusers"] = tmp / DIFFUSERS_WEIGHTS
        mode = 0o666 & ~current_umask()
        for f in tmp.rglob("*"):
            if f.is_file():
                f.chmod(mode)  # safetensors writes 0600; exports are meant to be shared
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            output_dir.rename(old)
            tmp.rename(output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {name: output_dir / path.relative_to(tmp) for name, path in files.items()}


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
