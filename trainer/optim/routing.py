"""Decide, per trainable parameter, whether Muon or AdamW updates it, and say why.

Muon orthogonalises the update of a weight *matrix* ``W ∈ R^{out×in}`` of a hidden linear map; that is
meaningful only when the tensor is a linear operator between two hidden spaces. So a parameter goes to
Muon iff it is the 2-D ``weight`` of an ``nn.Linear`` (its owning module is looked up, the shape alone is
not enough: ``scale_shift_table`` is 2-D too), it matches none of ``cfg.adamw_patterns`` (input and output
layers, modulation), and, for LoRA ``lora_A``/``lora_B`` matrices, ``cfg.lora_optimizer == "muon"``.
"""

import re
from dataclasses import dataclass

import torch
from torch import nn

from trainer.optim.config import OptimConfig

MUON = "muon"
ADAMW = "adamw"

_LORA_MATRIX = re.compile(r"(^|\.)lora_[AB]\.")
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase, nn.LocalResponseNorm)
_CONVS = (nn.modules.conv._ConvNd,)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


@dataclass(frozen=True)
class ParamRoute:
    """Where one trainable parameter goes.

    Attributes:
        name: full name as in ``model.named_parameters()``.
        shape: the parameter's shape.
        numel: number of elements.
        optimizer: ``"muon"`` or ``"adamw"``.
        reason: the rule that decided, in words (shown in the start-up table).
        decay: whether AdamW weight decay may apply (``nn.Linear``/convolution weights only; biases,
            norms, embeddings, position tensors and modulation tables are never decayed). Muon parameters
            always take ``muon_weight_decay``.
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    optimizer: str
    reason: str
    decay: bool = True


def route_parameters(model: nn.Module, cfg: OptimConfig) -> list[ParamRoute]:
    """Route every trainable parameter of ``model`` to Muon or AdamW.

    Frozen parameters (``requires_grad=False``) are skipped: they never enter an optimiser group.
    Order follows ``model.named_parameters()`` (shared parameters are listed once).

    Args:
        model: the module being trained, e.g. the LTX DiT with the audio adapter and peft LoRA attached.
        cfg: optimiser config (``name``, ``adamw_patterns``, ``lora_optimizer`` are read).

    Returns:
        One ``ParamRoute`` per trainable parameter.
    """
    patterns = [(p, re.compile(p)) for p in cfg.adamw_patterns]
    modules = dict(model.named_modules(remove_duplicate=False))
    routes = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = modules.get(owner_name, model)
        optimizer, reason, decay = _route_one(name, attr, param, owner, cfg, patterns)
        routes.append(
            ParamRoute(
                name=name,
                shape=tuple(param.shape),
                numel=param.numel(),
                optimizer=optimizer,
                reason=reason,
                decay=decay,
            )
        )
    return routes


def _route_one(
    name: str,
    attr: str,
    param: torch.Tensor,
    owner: nn.Module,
    cfg: OptimConfig,
    patterns: list[tuple[str, re.Pattern[str]]],
) -> tuple[str, str, bool]:
    owner_type = type(owner).__name__
    # Structural rules first: they describe what the tensor *is*, which is the most useful reason to log.
    is_norm = isinstance(owner, _NORMS) or "Norm" in owner_type  # diffusers ships its own RMSNorm etc.
    if attr == "bias":
        return ADAMW, "bias", False
    if param.ndim == 1 and not is_norm:
        return ADAMW, f"1-D tensor ({owner_type}.{attr})", False
    if is_norm:
        return ADAMW, f"norm ({owner_type}.{attr})", False
    if isinstance(owner, _EMBEDDINGS):
        return ADAMW, f"embedding ({owner_type}.{attr})", False
    if isinstance(owner, _CONVS):
        return ADAMW, f"convolution ({owner_type}.{attr}, {param.ndim}-D)", True
    if not (isinstance(owner, nn.Linear) and attr == "weight" and param.ndim == 2):
        # Position tensors, modulation tables and other free parameters: shape alone says nothing.
        return ADAMW, f"not an nn.Linear weight ({param.ndim}-D {owner_type}.{attr})", False
    # From here on: a 2-D nn.Linear weight, Muon's natural domain unless a rule says otherwise.
    for text, regex in patterns:
        if regex.search(name):
            return ADAMW, f"adamw_patterns: {text}", True
    if cfg.name == ADAMW:
        return ADAMW, "optim.name=adamw", True
    if _LORA_MATRIX.search(name) is not None:
        if cfg.lora_optimizer == ADAMW:
            return ADAMW, "LoRA matrix, lora_optimizer=adamw", True
        return MUON, "LoRA matrix (nn.Linear weight)", True
    return MUON, "hidden nn.Linear weight", True


def routes_by_optimizer(routes: list[ParamRoute]) -> dict[str, list[ParamRoute]]:
    """Split routes into ``{"muon": [...], "adamw": [...]}`` preserving order."""
    out: dict[str, list[ParamRoute]] = {MUON: [], ADAMW: []}
    for route in routes:
        out[route.optimizer].append(route)
    return out
