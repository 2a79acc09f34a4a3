"""Reading the files ``trainer.export`` writes and putting them onto a base DiT, checked key for key.

An export folder holds the audio adapter (``audio_adapter.safetensors`` + ``audio_adapter.json``) and, after
stage 2, the LoRA twice: in peft format (``lora/``) and in diffusers format (``pytorch_lora_weights.safetensors``).
Either LoRA file gives the same weights: both are read into one layout, ``<module>.lora_A.weight`` /
``<module>.lora_B.weight`` with the ``alpha / rank`` scale folded into ``lora_B`` (so every module's scale is 1),
and injected with peft. Before anything is loaded the files are compared with the base DiT: an adapter
built for another DiT shape, a LoRA on modules the base does not have, or a LoRA matrix of another width is
refused with the keys named.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from trainer.model.audio_adapter import AudioAdapterConfig
from trainer.model.weights import load_safetensors_checked

ADAPTER_WEIGHTS = "audio_adapter.safetensors"
ADAPTER_CONFIG = "audio_adapter.json"
LORA_DIR = "lora"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
DIFFUSERS_WEIGHTS = "pytorch_lora_weights.safetensors"
LORA_FORMATS = ("auto", "diffusers", "peft", "none")
EXPORT_HINT = "an export folder is written by `python -m trainer.export checkpoint=<ckpt> output_dir=<dir>`"
# diffusers stores the LoRA's peft settings as JSON under this safetensors metadata key ("transformer.r", ...).
_DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")
_MAX_NAMED = 3


class WeightsMismatchError(ValueError):
    """Exported weights that do not fit the base model; the message names the files and the keys."""


@dataclass
class ExportedWeights:
    """The contents of an export folder.

    Attributes:
        folder: The export folder.
        adapter: Audio adapter tensors (keys ``audio_projection.…``, ``transformer_blocks.{i}.audio_attn.…``).
        adapter_config: The adapter's shape.
        meta: Everything else ``audio_adapter.json`` holds (``provenance``, and for newer exports ``audio``,
            the feature settings, and ``training``, the sampling-relevant training settings).
        lora: LoRA tensors ``<module>.lora_A.weight [r, in]`` / ``<module>.lora_B.weight [out, r]`` with the
            scale folded into ``lora_B``; ``None`` without LoRA (a stage-1 export).
        lora_source: The LoRA file or folder read.
    """

    folder: Path
    adapter: dict[str, torch.Tensor]
    adapter_config: AudioAdapterConfig
    meta: dict
    lora: dict[str, torch.Tensor] | None = None
    lora_source: Path | None = None


def read_exported_weights(folder: str | Path, lora: str = "auto") -> ExportedWeights:
    """Read an export folder.

    Args:
        folder: What ``trainer.export`` wrote.
        lora: Which LoRA file to read: ``auto`` (``pytorch_lora_weights.safetensors``, else ``lora/``, else
            none), ``diffusers``, ``peft`` or ``none``.

    Returns:
        The adapter, its config and the LoRA.

    Raises:
        FileNotFoundError: The folder or one of its files is missing (named, with where it comes from).
        ValueError: A file does not parse, or ``lora`` is not one of :data:`LORA_FORMATS`.
    """
    if lora not in LORA_FORMATS:
        raise ValueError(f"lora format {lora!r}: expected one of {', '.join(LORA_FORMATS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such export folder; {EXPORT_HINT}")
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} has no {name} (not a talkdit export folder); {EXPORT_HINT}")
    try:
        meta = json.loads((folder / ADAPTER_CONFIG).read_text())
        names = {f.name for f in fields(AudioAdapterConfig)}
        adapter_config = AudioAdapterConfig(**{k: v for k, v in meta["adapter"].items() if k in names})
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{folder / ADAPTER_CONFIG} is not an audio adapter description: {err}") from err
    adapter = load_safetensors_checked(folder / ADAPTER_WEIGHTS)
    out = ExportedWeights(folder, adapter, adapter_config, meta)
    diffusers_file, peft_dir = folder / DIFFUSERS_WEIGHTS, folder / LORA_DIR
    if lora == "auto":
        lora = "diffusers" if diffusers_file.is_file() else "peft" if peft_dir.is_dir() else "none"
    if lora == "diffusers":
        if not diffusers_file.is_file():
            raise FileNotFoundError(f"{folder} has no {DIFFUSERS_WEIGHTS} (a stage-2 export writes it); {EXPORT_HINT}")
        out.lora, out.lora_source = read_diffusers_lora(diffusers_file), diffusers_file
    elif lora == "peft":
        if not (peft_dir / PEFT_CONFIG).is_file():
            raise FileNotFoundError(
                f"{folder} has no {LORA_DIR}/{PEFT_CONFIG} (a stage-2 export writes it); {EXPORT_HINT}"
            )
        out.lora, out.lora_source = read_peft_lora(peft_dir), peft_dir
    return out


def _module_alpha(module: str, alpha: float, alpha_pattern: dict) -> float:
    """A module's alpha, peft's rule: the first ``alpha_pattern`` key matching the name's end, else ``alpha``."""
    for key, value in (alpha_pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return float(alpha)


def fold_lora_scale(tensors: dict[str, torch.Tensor], alpha: float, alpha_pattern: dict | None = None) -> dict:
    """Fold each module's ``alpha / rank`` into its ``lora_B`` (rank = the matrices' own inner size).

    Args:
        tensors: ``<module>.lora_A.weight [r, in]`` / ``<module>.lora_B.weight [out, r]``.
        alpha: ``lora_alpha``.
        alpha_pattern: peft's per-module alphas.

    Returns:
        The same keys; ``lora_B`` scaled (float32 math, the file's dtype kept).
    """
    out = {}
    for key, value in tensors.items():
        m = _LORA_KEY.match(key)
        if m is None or m["part"] == "A":
            out[key] = value
            continue
        rank = value.shape[1]
        scale = _module_alpha(m["module"], alpha, alpha_pattern or {}) / rank
        out[key] = value if scale == 1.0 else (value.float() * scale).to(value.dtype)
    return out


def read_diffusers_lora(path: Path) -> dict[str, torch.Tensor]:
    """A diffusers-format LoRA file (keys ``transformer.<module>.lora_A.weight``) in the common layout.

    Raises:
        ValueError: A key is not a transformer LoRA matrix (a text-encoder LoRA, another file).
    """
    tensors = load_safetensors_checked(path)
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
    settings = json.loads(metadata.get(_DIFFUSERS_METADATA_KEY, "{}"))
    out = {}
    for key, value in tensors.items():
        name = key.removeprefix("transformer.")
        if name == key or not _LORA_KEY.match(name):
            raise ValueError(
                f"{path}: key {key!r} is not a transformer LoRA matrix (transformer.<module>.lora_A.weight)"
            )
        out[name] = value
    alpha = settings.get("transformer.lora_alpha")
    if alpha is None:
        return out  # diffusers' loader then uses alpha = rank, scale 1; talkdit's export writes it that way
    return fold_lora_scale(out, float(alpha), settings.get("transformer.alpha_pattern"))


def read_peft_lora(folder: Path) -> dict[str, torch.Tensor]:
    """A peft LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``) in the common layout.

    Raises:
        FileNotFoundError: The weight file is missing.
        ValueError: The config does not parse or a key is not a LoRA matrix.
    """
    weights = folder / PEFT_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{folder} has no {PEFT_WEIGHTS}; {EXPORT_HINT}")
    try:
        config = json.loads((folder / PEFT_CONFIG).read_text())
        alpha = float(config["lora_alpha"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{folder / PEFT_CONFIG} is not a peft LoRA config: {err}") from err
    out = {}
    for key, value in load_safetensors_checked(weights).items():
        name = key.removeprefix("base_model.model.")
        if not _LORA_KEY.match(name):
            raise ValueError(f"{weights}: key {key!r} is not a LoRA matrix (base_model.model.<module>.lora_A.weight)")
        out[name] = value
    return fold_lora_scale(out, alpha, config.get("alpha_pattern"))


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMED])
    return shown + (f" and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")


def adapter_mismatch(cfg: AudioAdapterConfig, arch) -> list[str]:
    """How an adapter's shape disagrees with a DiT architecture (``LTXTransformerArch``); empty when it fits."""
    want = {
        "num_layers": arch.num_layers,
        "num_heads": arch.num_attention_heads,
        "head_dim": arch.attention_head_dim,
        "inner_dim": arch.num_attention_heads * arch.attention_head_dim,
    }
    return [f"{k}: adapter {getattr(cfg, k)} vs base {v}" for k, v in want.items() if getattr(cfg, k) != v]


def lora_modules(lora: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``module name → (lora_A [r, in], lora_B [out, r])``.

    Raises:
        ValueError: A module has only one of its two matrices.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in lora.items():
        m = _LORA_KEY.match(key)
        parts.setdefault(m["module"], {})[m["part"]] = value
    incomplete = sorted(k for k, v in parts.items() if len(v) != 2)
    if incomplete:
        raise ValueError(f"LoRA modules without both lora_A and lora_B: {_named(incomplete)}")
    return {k: (v["A"], v["B"]) for k, v in parts.items()}


def lora_mismatch(transformer: nn.Module, lora: dict[str, torch.Tensor]) -> list[str]:
    """Where a LoRA does not fit a DiT: modules it lacks, modules that are not linear, other widths.

    Args:
        transformer: The base ``LTXVideoTransformer3DModel`` (with or without the audio adapter).
        lora: LoRA tensors in the common layout.

    Returns:
        One line per kind of problem, naming the first keys; empty when the LoRA fits.
    """
    own = dict(transformer.named_modules())
    missing, not_linear, widths, ranks = [], [], [], []
    for name, (a, b) in sorted(lora_modules(lora).items()):
        module = own.get(name)
        if module is None:
            missing.append(f"{name}.lora_A.weight")
        elif not isinstance(module, nn.Linear):
            not_linear.append(f"{name} ({type(module).__name__})")
        elif a.shape[1] != module.in_features or b.shape[0] != module.out_features:
            widths.append(f"{name}: LoRA {b.shape[0]}x{a.shape[1]} vs base {module.out_features}x{module.in_features}")
        elif a.shape[0] != b.shape[1]:
            ranks.append(f"{name}: lora_A rank {a.shape[0]} vs lora_B rank {b.shape[1]}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} LoRA keys for modules the base does not have ({_named(missing)})")
    if not_linear:
        problems.append(f"{len(not_linear)} LoRA modules that are not linear in the base ({_named(not_linear)})")
    if widths:
        problems.append(f"{len(widths)} LoRA matrices of another width ({_named(widths)})")
    if ranks:
        problems.append(f"{len(ranks)} LoRA modules whose two matrices disagree ({_named(ranks)})")
    return problems


def attach_lora(transformer: nn.Module, lora: dict[str, torch.Tensor], adapter_name: str = "default") -> list[str]:
    """Inject a LoRA (common layout, scale folded) into the DiT with peft and load its weights.

    Every module keeps its own rank (peft ``rank_pattern``); alpha equals the rank, so the scale is 1.

    Args:
        transformer: The DiT (checked with :func:`lora_mismatch` first).
        lora: LoRA tensors in the common layout.
        adapter_name: peft adapter name.

    Returns:
        The adapted module names.

    Raises:
        WeightsMismatchError: The LoRA does not fit (see :func:`lora_mismatch`).
    """
    from peft import LoraConfig, set_peft_model_state_dict

    problems = lora_mismatch(transformer, lora)
    if problems:
        raise WeightsMismatchError("; ".join(problems))
    modules = lora_modules(lora)
    ranks = {name: int(a.shape[0]) for name, (a, _) in modules.items()}
    rank = max(set(ranks.values()), key=list(ranks.values()).count)
    # Full module names as patterns (peft anchors them at a name boundary and at the end).
    pattern = {re.escape(n): r for n, r in ranks.items() if r != rank}
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=sorted(modules),
        rank_pattern=pattern,
        alpha_pattern=dict(pattern),
        init_lora_weights=False,
    )
    transformer.add_adapter(config, adapter_name=adapter_name)
    result = set_peft_model_state_dict(transformer, lora, adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise WeightsMismatchError(f"LoRA keys peft could not place: {_named(sorted(unexpected))}")
    return sorted(modules)
