"""Reading training checkpoints and the audio-adapter files stage 2 starts from.

A training checkpoint (Lightning ``.ckpt``) holds only the trainable tensors under ``state_dict`` (the
frozen backbone, VAE and text encoder are reloaded from their sources) plus a ``talkdit`` entry with
the resolved config, the adapter shape and fingerprints. It is read with ``weights_only=True``.

Under DeepSpeed a checkpoint is a folder (``<name>.ckpt/<tag>/``: the client state beside every rank's
ZeRO partitions); reading it consolidates the fp32 master weights of the trainable tensors first.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainer.model.audio_adapter import ADAPTER_KEY_PATTERN, AudioAdapterConfig
from trainer.model.weights import load_safetensors_checked

# Parameters of the LightningModule live under ``dit.transformer.`` in its state dict.
MODULE_PREFIX = "dit.transformer."
ADAPTER_WEIGHTS = "audio_adapter.safetensors"
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
    return ckpt


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
    ckpt["state_dict"] = {k: v.float().contiguous() for k, v in tensors.items() if k in trainable}
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
