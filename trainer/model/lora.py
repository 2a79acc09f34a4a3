"""Stage-2 LoRA on the DiT's linear layers through peft, with a report of where adapters went."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from trainer.config.schema import LoRAConfig

ADAPTER_NAME = "default"


def peft_lora_config(cfg: LoRAConfig) -> LoraConfig:
    """The peft ``LoraConfig`` for a talkdit LoRA config."""
    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        init_lora_weights=True,
    )


@dataclass
class LoRAReport:
    """Which modules received LoRA adapters.

    Attributes:
        modules: Full names of the adapted ``nn.Linear`` modules.
        rank: LoRA rank.
        num_parameters: Trainable LoRA parameters.
    """

    modules: list[str]
    rank: int
    num_parameters: int

    def format(self) -> str:
        """Human-readable start-up summary: counts per module kind and the first and last names."""
        kinds = Counter(re.sub(r"transformer_blocks\.\d+\.", "transformer_blocks.*.", m) for m in self.modules)
        lines = [f"LoRA rank {self.rank}: {len(self.modules)} modules, {self.num_parameters:,} parameters"]
        lines += [f"  {count:4d} x {kind}" for kind, count in sorted(kinds.items())]
        return "\n".join(lines)


def add_lora(transformer: nn.Module, cfg: LoRAConfig) -> LoRAReport:
    """Inject LoRA adapters into the DiT (in place) with diffusers' peft integration.

    Args:
        transformer: ``LTXVideoTransformer3DModel`` (with or without the audio adapter; the regex
            in ``cfg.target_modules`` decides, and the default never matches ``audio_attn``).
        cfg: Rank, alpha, dropout and target regex.

    Returns:
        The report of adapted modules.

    Raises:
        ValueError: The regex matches no module, or matches a module of the audio adapter.
    """
    pattern = re.compile(cfg.target_modules)
    targets = [n for n, m in transformer.named_modules() if isinstance(m, nn.Linear) and pattern.fullmatch(n)]
    if not targets:
        raise ValueError(f"stage.lora.target_modules={cfg.target_modules!r} matches no linear layer of the DiT")
    clash = [n for n in targets if "audio_attn" in n or n.startswith("audio_projection")]
    if clash:
        raise ValueError(
            f"stage.lora.target_modules matches audio adapter layers ({clash[0]}, ...); the adapter trains in full"
        )
    transformer.add_adapter(peft_lora_config(cfg), adapter_name=ADAPTER_NAME)
    lora_params = [p for n, p in transformer.named_parameters() if ".lora_" in n]
    for p in lora_params:
        p.requires_grad_(True)
    return LoRAReport(modules=targets, rank=cfg.rank, num_parameters=sum(p.numel() for p in lora_params))


def lora_state_dict(transformer: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA tensors in peft's naming without adapter name (``….to_q.lora_A.weight``)."""
    return {k: v.detach() for k, v in get_peft_model_state_dict(transformer, adapter_name=ADAPTER_NAME).items()}


def load_lora_weights(transformer: nn.Module, tensors: dict[str, torch.Tensor], cfg: LoRAConfig, source: str) -> None:
    """Set the LoRA that :func:`add_lora` injected to weights a previous stage trained.

    Args:
        transformer: The DiT with its LoRA injected (``cfg``'s rank, alpha and targets).
        tensors: ``<module>.lora_A.weight [r, in]`` / ``<module>.lora_B.weight [out, r]`` with the previous
            stage's ``alpha / rank`` folded into ``lora_B`` (the exports' layout).
        cfg: This stage's LoRA settings (its scale is divided out of ``lora_B``).
        source: The file the tensors came from, for errors.

    Raises:
        ValueError: The modules or ranks differ from this stage's LoRA (named).
    """
    own = lora_state_dict(transformer)
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or extra:
        raise ValueError(
            f"{source}: its LoRA does not cover the modules stage.lora targets "
            f"(missing {missing[:2]}, unexpected {extra[:2]}; {len(missing)} and {len(extra)} in all)"
        )
    for key, value in own.items():
        if tensors[key].shape != value.shape:
            raise ValueError(
                f"{source}: {key} has shape {tuple(tensors[key].shape)}, stage.lora (rank {cfg.rank}) needs "
                f"{tuple(value.shape)}; set stage.lora.rank to the previous stage's"
            )
    scale = cfg.alpha / cfg.rank
    state = {k: (v / scale if ".lora_B." in k else v) for k, v in tensors.items()}
    set_peft_model_state_dict(transformer, state, adapter_name=ADAPTER_NAME)
