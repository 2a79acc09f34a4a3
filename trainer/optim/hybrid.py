"""``MuonAdamW``: one ``torch.optim.Optimizer`` driving an inner torch ``Muon`` and an inner ``AdamW``.

Lightning, LR schedulers, AMP grad scalers and checkpointing all expect *one* optimizer object. The
wrapper owns no state of its own: ``param_groups`` is the concatenation of the inner optimizers' group
dicts (the very same dict objects, so a scheduler writing ``group["lr"]`` through the wrapper changes the
inner optimizers), ``state`` is a merged read view, and ``state_dict`` nests both inner state dicts.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import AdamW, Muon, Optimizer
from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz

MUON = "muon"
ADAMW = "adamw"
_KINDS = (MUON, ADAMW)
STATE_DICT_FORMAT = "talkdit.MuonAdamW/1"


def newton_schulz(update: torch.Tensor, coefficients: tuple, steps: int, eps: float) -> torch.Tensor:
    """Muon's orthogonalisation of a 2-D update ``[m, n]``: torch's Newton–Schulz iteration, in float32 on CPU.

    On accelerators it is torch's own function, which iterates in bfloat16 for speed. CPUs without bf16 matrix
    units (AVX2-only x86) emulate bf16 matmuls: there the same iteration took 74 % of a tiny DiT's training step
    (1.5 s per step of the demo's base stage), and float32 is both faster and more exact.
    """
    if update.device.type != "cpu":
        return _zeropower_via_newtonschulz(update, coefficients, steps, eps)
    a, b, c = coefficients
    x = update.float()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class WholeMatrixMuon(Muon):
    """torch's ``Muon`` that orthogonalises FSDP2-sharded (``DTensor``) matrices whole, and CPU ones in float32.

    For a sharded parameter the Nesterov momentum update is gathered, orthogonalised by the same Newton–Schulz
    function as an unsharded one (:func:`newton_schulz`), and each rank keeps its shard of the result.
    (Running the iteration on the ``DTensor`` itself would also be mathematically whole, but its matmuls
    round differently in bf16, which on ill-conditioned gradients moves the update by tens of percent.)
    Plain accelerator tensors take torch's own step unchanged; CPU tensors, sharded ones under CPU offload included,
    orthogonalise in float32.
    """

    @torch.no_grad()
    def step(self, closure=None):
        """One Muon step (see the class docstring)."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        params_all = [p for group in self.param_groups for p in group["params"]]
        if not any(isinstance(p, DTensor) or p.device.type == "cpu" for p in params_all):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            bufs: list[torch.Tensor] = []
            self._init_group(group, params, grads, bufs)
            lr, momentum = float(group["lr"]), group["momentum"]
            for param, grad, buf in zip(params, grads, bufs, strict=True):
                # torch.optim._muon._single_tensor_muon, with the orthogonalisation on the whole matrix.
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                args = (group["ns_coefficients"], group["ns_steps"], group["eps"])
                if isinstance(update, DTensor):
                    whole = newton_schulz(update.full_tensor(), *args)
                    ortho = distribute_tensor(whole, update.device_mesh, update.placements, src_data_rank=None)
                else:
                    ortho = newton_schulz(update, *args)
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(ortho, alpha=-_adjust_lr(lr, group["adjust_lr_fn"], param.shape))
        return loss


class MuonAdamW(Optimizer):
    """Muon for hidden 2-D matrices and AdamW for everything else, behind one optimizer interface.

    Every parameter group must carry ``"optimizer": "muon" | "adamw"``; it is handed to the inner
    optimizer of that kind (created on first use, so either side may be empty). Group keys not given
    fall back to ``muon_defaults`` / ``adamw_defaults`` and then to torch's own defaults (note torch
    Muon's default ``weight_decay`` is 0.1; ``build_optimizer`` always passes explicit values).

    Args:
        param_groups: group dicts ``{"params": [...], "optimizer": "muon"|"adamw", "lr": ..., ...}``.
            ``params`` may hold tensors or ``(name, tensor)`` pairs (names are kept as torch's
            ``param_names`` and make error messages and the start-up table precise).
        muon_defaults: keyword arguments for ``torch.optim.Muon`` (``lr``, ``weight_decay``,
            ``momentum``, ``nesterov``, ``ns_steps``, ``adjust_lr_fn``, ...).
        adamw_defaults: keyword arguments for ``torch.optim.AdamW`` (``lr``, ``betas``, ``eps``,
            ``weight_decay``, ...).

    Raises:
        ValueError: a group without a valid ``"optimizer"`` tag, a non-2-D tensor in a Muon group, or a
            parameter in more than one group.
    """

    def __init__(
        self,
        param_groups: Iterable[dict[str, Any]],
        *,
        muon_defaults: Mapping[str, Any] | None = None,
        adamw_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        # Set before Optimizer.__init__, which calls our add_param_group for every group.
        self._muon: Muon | None = None
        self._adamw: AdamW | None = None
        self._muon_defaults = dict(muon_defaults or {})
        self._adamw_defaults = dict(adamw_defaults or {})
        super().__init__(list(param_groups), defaults={})

    # -- views over the inner optimizers ---------------------------------------------------------------

    @property
    def muon(self) -> Muon | None:
        """The inner Muon (a ``WholeMatrixMuon``; ``None`` when no group is routed to Muon)."""
        return self._muon

    @property
    def adamw(self) -> AdamW | None:
        """The inner ``torch.optim.AdamW`` (``None`` when no group is routed to AdamW)."""
        return self._adamw

    def _inner(self) -> list[Optimizer]:
        return [opt for opt in (self._muon, self._adamw) if opt is not None]

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Muon groups then AdamW groups: the inner optimizers' own dicts, not copies."""
        return [group for opt in self._inner() for group in opt.param_groups]

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        # Optimizer.__init__ assigns [] before adding groups; real storage lives in the inner optimizers.
        if len(value) != 0:
            raise AttributeError("MuonAdamW.param_groups is a view; use add_param_group()")

    @property
    def state(self) -> dict[torch.Tensor, Any]:  # type: ignore[override]
        """Merged per-parameter state of both inner optimizers (read view; the values are the live dicts)."""
        merged: dict[torch.Tensor, Any] = {}
        for opt in self._inner():
            merged.update(opt.state)
        return merged

    @state.setter
    def state(self, value: Mapping[torch.Tensor, Any]) -> None:
        # Optimizer.__init__ assigns an empty defaultdict; real storage lives in the inner optimizers.
        if len(value) != 0:
            raise AttributeError("MuonAdamW.state is a view over the inner optimizers; it cannot be set")

    # -- groups -----------------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimizer named by its ``"optimizer"`` tag.

        Args:
            param_group: ``{"params": ..., "optimizer": "muon"|"adamw", ...}``; the dict object itself
                becomes one of ``self.param_groups``.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        kind = param_group.get("optimizer")
        if kind not in _KINDS:
            raise ValueError(f"every MuonAdamW param group needs 'optimizer' in {list(_KINDS)}, got {kind!r}")
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        param_group["params"] = params
        named = [p if isinstance(p, tuple) else (None, p) for p in params]
        if kind == MUON:
            for pname, tensor in named:
                if tensor.ndim != 2:
                    raise ValueError(
                        f"Muon only takes 2-D matrices, but parameter {pname or '<unnamed>'} has shape "
                        f"{tuple(tensor.shape)}; route it to AdamW (see trainer.optim.routing)"
                    )
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        for pname, tensor in named:
            if id(tensor) in seen:
                raise ValueError(f"parameter {pname or tuple(tensor.shape)} is already in a MuonAdamW group")
        if kind == MUON:
            if self._muon is None:
                self._muon = WholeMatrixMuon([param_group], **self._muon_defaults)
            else:
                self._muon.add_param_group(param_group)
        elif self._adamw is None:
            self._adamw = AdamW([param_group], **self._adamw_defaults)
        else:
            self._adamw.add_param_group(param_group)

    # -- optimisation -----------------------------------------------------------------------------------

    def step(self, closure=None):
        """Run ``closure`` once (if given), then step Muon and AdamW on the gradients it produced.

        Args:
            closure: re-evaluates the model and returns the loss (Lightning always passes one).

        Returns:
            The closure's return value, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self._inner():
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter of both inner optimizers."""
        for opt in self._inner():
            opt.zero_grad(set_to_none=set_to_none)

    # -- checkpointing ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Both inner state dicts, nested: ``{"format", "muon": sd | None, "adamw": sd | None}``.

        Only tensors, numbers, strings, lists/tuples and dicts: safe for ``torch.load(weights_only=True)``.
        """
        return {
            "format": STATE_DICT_FORMAT,
            MUON: None if self._muon is None else self._muon.state_dict(),
            ADAMW: None if self._adamw is None else self._adamw.state_dict(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore both inner optimizers from ``state_dict()`` output.

        The receiving optimizer must have been built the same way (same groups, same parameter order);
        torch's own checks on group and parameter counts then apply to each side.

        Raises:
            ValueError: if the dict is not a MuonAdamW state dict or one side is present in only one of
                the two.
        """
        if state_dict.get("format") != STATE_DICT_FORMAT:
            raise ValueError(
                f"not a MuonAdamW state dict (format={state_dict.get('format')!r}, "
                f"keys={sorted(state_dict)}); expected format {STATE_DICT_FORMAT!r}"
            )
        for kind, opt in ((MUON, self._muon), (ADAMW, self._adamw)):
            saved = state_dict.get(kind)
            if (saved is None) != (opt is None):
                have = "no" if opt is None else "a"
                raise ValueError(
                    f"cannot load MuonAdamW state: this optimizer has {have} {kind} side but the saved state "
                    f"{'has none' if saved is None else 'has one'}; build both from the same routing"
                )
            if opt is not None:
                # Group dicts are replaced by torch here; param_groups is a live view, so nothing to relink.
                opt.load_state_dict(saved)

    # Pickling / deepcopy: the inner optimizers carry everything; the base class would pickle the views.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "defaults": self.defaults,
            "_muon": self._muon,
            "_adamw": self._adamw,
            "_muon_defaults": self._muon_defaults,
            "_adamw_defaults": self._adamw_defaults,
        }

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            n = sum(p.numel() for p in group["params"])
            lines.append(
                f"  group {i} [{group['optimizer']}] {group.get('name', '')}: lr={group['lr']:.3e} "
                f"weight_decay={group['weight_decay']} tensors={len(group['params'])} params={n}"
            )
        lines.append(")")
        return "\n".join(lines)
