"""Reading training checkpoints and the audio-adapter files stage 2 starts from.

A training checkpoint (Lightning ``.ckpt``) holds only the trainable tensors under ``state_dict`` (the
frozen backbone, VAE and text encoder are reloaded from their sources) plus a ``talkdit`` entry with
the resolved config, the adapter shape and fingerprints. It is read with ``weights_only=True``.

Under DeepSpeed a checkpoint is a folder (``<name>.ckpt/<tag>/``: the client state beside every rank's
ZeRO partitions); reading it consolidates the fp32 master weights of the trainable tensors first.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import torch

from trainer.config.compose import config_from_container, to_container
from trainer.config.errors import ConfigError
from trainer.model.audio_adapter import ADAPTER_KEY_PATTERN, AudioAdapterConfig
from trainer.model.exported import fold_lora_scale, read_exported_weights
from trainer.model.weights import load_safetensors_checked

# Parameters of the LightningModule live under ``model.dit.transformer.`` in its state dict (its plain model
# is ``model``); checkpoints written before that held them under ``dit.transformer.`` (:func:`upgrade_state_keys`).
MODULE_PREFIX = "model.dit.transformer."
_LEGACY_PREFIX = "dit."
ADAPTER_WEIGHTS = "audio_adapter.safetensors"
# Config sections that must not change between a checkpoint and the run resuming from it.
RESUME_KEYS = ("model", "audio", "stage")
# Within them, where files live or how much is cached does not change what the weights mean.
RESUME_IGNORED_SUFFIXES = (".path", ".adapter_init", ".cache_size", ".device", ".batch_chunks")
ADAPTER_CONFIG = "audio_adapter.json"


def read_training_checkpoint(path: str | Path) -> dict:
    """Load a talkdit training checkpoint safely.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a readable checkpoint, or not one written by talkdit.
    """
    path = Path(path)
    if path.is_dir():
        return read_deepspeed_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise ValueError(f"{path} is not a readable training checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "talkdit" not in ckpt:
        raise ValueError(f"{path} is not a talkdit training checkpoint (no 'state_dict'/'talkdit' entries)")
    ckpt["state_dict"] = upgrade_state_keys(ckpt["state_dict"])
    return ckpt


def upgrade_state_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint state dict with the keys of today's module (``dit.…`` of older checkpoints → ``model.dit.…``)."""
    return {("model." + k if k.startswith(_LEGACY_PREFIX) else k): v for k, v in state.items()}


def read_deepspeed_checkpoint(path: Path) -> dict:
    """A DeepSpeed checkpoint folder as one talkdit checkpoint dict (fp32 trainable tensors consolidated).

    Raises:
        ValueError: The folder is not a complete talkdit DeepSpeed checkpoint.
    """
    tag_file = path / "latest"
    if not tag_file.is_file():
        raise ValueError(f"{path} is a folder but not a complete DeepSpeed checkpoint (no 'latest' file)")
    tag = tag_file.read_text().strip()
    # Rank 0's client state: ZeRO-2 writes one model-states file, ZeRO-3 one per rank.
    states = path / tag / "mp_rank_00_model_states.pt"
    if not states.is_file():
        states = path / tag / "zero_pp_rank_0_mp_rank_00_model_states.pt"
    try:
        client = torch.load(states, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read DeepSpeed client state {states}: {err}") from err
    if not isinstance(client, dict) or "talkdit" not in client:
        raise ValueError(f"{path} is not a talkdit DeepSpeed checkpoint (no 'talkdit' entry in {states.name})")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    try:
        tensors = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=tag, exclude_frozen_parameters=True)
    except Exception as err:  # DeepSpeed raises ValueError/FileNotFoundError/KeyError for partial folders
        raise ValueError(f"{path}: cannot consolidate the ZeRO partitions of tag {tag!r}: {err}") from err
    keep = ("talkdit", "global_step", "epoch", "loops", "callbacks", "lr_schedulers", "pytorch-lightning_version")
    ckpt = {k: client[k] for k in keep if k in client}
    # DeepSpeed adds the module's buffers; a talkdit checkpoint keeps the trainable tensors only.
    trainable = set(client["talkdit"].get("trainable", tensors))
    state = {k: v.float().contiguous() for k, v in tensors.items() if k in trainable}
    ckpt["state_dict"] = upgrade_state_keys(state)
    return ckpt


def transformer_state(ckpt: dict) -> dict[str, torch.Tensor]:
    """The checkpoint's transformer tensors with keys relative to the transformer."""
    return {k.removeprefix(MODULE_PREFIX): v for k, v in ckpt["state_dict"].items() if k.startswith(MODULE_PREFIX)}


def adapter_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Audio adapter tensors out of a transformer state dict."""
    return {k: v for k, v in state.items() if ADAPTER_KEY_PATTERN.search(k)}


def read_adapter_source(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None, str]:
    """Audio adapter weights from an export folder, an ``audio_adapter.safetensors`` or a training checkpoint.

    Args:
        path: The source.

    Returns:
        ``(tensors, adapter config dict or None, description of the file read)``.

    Raises:
        FileNotFoundError: The folder lacks the adapter files.
        ValueError: The file holds no adapter.
    """
    path = Path(path)
    if path.is_dir():
        weights = path / ADAPTER_WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"{path} has no {ADAPTER_WEIGHTS} (expected a talkdit export folder)")
        path = weights
    if path.suffix == ".safetensors":
        tensors = load_safetensors_checked(path)
        cfg_file = path.with_name(ADAPTER_CONFIG)
        cfg = json.loads(cfg_file.read_text())["adapter"] if cfg_file.is_file() else None
        source = str(path)
    else:
        ckpt = read_training_checkpoint(path)
        tensors = adapter_state(transformer_state(ckpt))
        cfg = ckpt["talkdit"].get("adapter")
        source = f"{path} (training checkpoint)"
    if not tensors:
        raise ValueError(f"{source} holds no audio adapter tensors")
    return tensors, cfg, source


# A LoRA matrix in a training checkpoint: peft names it with its adapter name ("default").
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])\.default\.weight$")


def read_lora_source(path: str | Path) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The LoRA a previous stage trained, from its export folder, its ``audio_adapter.safetensors`` or checkpoint.

    Args:
        path: The source (``stage.adapter_init``).

    Returns:
        ``(tensors or None when it holds no LoRA, description of the file read)``; tensors in the exports'
        layout (``<module>.lora_A.weight``, ``<module>.lora_B.weight`` with ``alpha / rank`` folded in).
    """
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        exported = read_exported_weights(path if path.is_dir() else path.parent)
        return exported.lora, str(exported.lora_source or path)
    ckpt = read_training_checkpoint(path)
    tensors = {
        f"{m['module']}.lora_{m['part']}.weight": v
        for k, v in transformer_state(ckpt).items()
        if (m := _LORA_KEY.match(k))
    }
    source = f"{path} (training checkpoint)"
    if not tensors:
        return None, source
    return fold_lora_scale(tensors, float(ckpt["talkdit"]["config"]["stage"]["lora"]["alpha"])), source


def check_adapter_config(found: dict | None, expected: AudioAdapterConfig, source: str) -> None:
    """Refuse an adapter saved for another shape, naming every differing field.

    Raises:
        ValueError: Some field differs.
    """
    if found is None:
        return
    want = expected.to_dict()
    diffs = [f"{k}: file {found.get(k)!r} vs model {v!r}" for k, v in want.items() if found.get(k) != v]
    if diffs:
        raise ValueError(f"audio adapter in {source} was built for another model: " + "; ".join(diffs))


def check_resume_compatible(module, checkpoint: dict, source: str) -> None:
    """Refuse a checkpoint whose model/audio/stage config or tensor shapes differ from a training module's.

    Args:
        module: The :class:`~trainer.lightning_module.TalkingHeadModule` about to resume.
        checkpoint: The checkpoint (:func:`read_training_checkpoint`, or Lightning's dict).
        source: What to call the checkpoint in errors.

    Raises:
        ValueError: Naming the differing config keys, or the first missing/mis-shaped tensor.
    """
    meta = checkpoint.get("talkdit")
    if meta is None:
        raise ValueError(f"{source} was not written by talkdit (no 'talkdit' metadata)")
    saved = meta.get("config", {})
    # Through today's schema: keys added since the checkpoint was written take their defaults, so a run resumes
    # across an option's arrival unless it sets that option otherwise. A config that no longer fits is compared
    # as stored: the differing keys below name what changed.
    with contextlib.suppress(ConfigError):
        saved = to_container(config_from_container(saved, source=source))
    now = to_container(module.cfg)
    diffs = [
        d
        for d in _diff_keys({k: saved.get(k) for k in RESUME_KEYS}, {k: now[k] for k in RESUME_KEYS})
        if not d.endswith(RESUME_IGNORED_SUFFIXES)
    ]
    if diffs:
        raise ValueError(f"{source} was trained with another configuration; differing keys: {', '.join(diffs[:12])}")
    own = dict(module.named_parameters())
    for k, v in checkpoint["state_dict"].items():
        if k not in own:
            raise ValueError(f"{source} holds tensor {k!r} that this model does not have")
        if own[k].shape != v.shape:
            raise ValueError(
                f"{source}: tensor {k!r} has shape {tuple(v.shape)}, this model {tuple(own[k].shape)} "
                "(a checkpoint of another model size)"
            )
    missing = [n for n in module.trainable_state_names() if n not in checkpoint["state_dict"]]
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} trainable tensors (first: {missing[0]})")


def _diff_keys(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
