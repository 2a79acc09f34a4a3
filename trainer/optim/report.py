"""Start-up table of optimiser groups and per-parameter routing, fixed-width for logs."""

import math
from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer

from trainer.optim.routing import MUON, ParamRoute


def muon_lr_scale(shape: Sequence[int], adjust_lr_fn: str | None) -> float:
    """Per-matrix lr multiplier of torch Muon (``torch.optim._muon._adjust_lr``), for reporting.

    Args:
        shape: ``(out, in)`` of the matrix.
        adjust_lr_fn: ``"original"`` / ``None`` → ``sqrt(max(1, out/in))``; ``"match_rms_adamw"`` →
            ``0.2·sqrt(max(out, in))``.
    """
    rows, cols = shape[:2]
    if adjust_lr_fn in (None, "original"):
        return math.sqrt(max(1.0, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


def _base_lr(group: dict[str, Any]) -> float:
    # After a scheduler is attached, "lr" is the scheduled value (0 at the start of warm-up).
    return float(group.get("initial_lr", group["lr"]))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def fmt(cells: Sequence[str]) -> str:
        parts = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [fmt(header), rule, *(fmt(r) for r in rows)]


def format_param_table(routes: Sequence[ParamRoute], optimizer: Optimizer) -> str:
    """Render the optimiser set-up: one row per param group, then one row per trainable parameter.

    Args:
        routes: output of ``route_parameters`` (trainable parameters only).
        optimizer: the optimizer built from those routes (``MuonAdamW``; groups named by ``param_names``
            are matched by name, otherwise by their ``"optimizer"`` tag).

    Returns:
        Multi-line plain text. ``base_lr`` is the group lr before scheduling; ``eff_lr`` includes torch
        Muon's shape adjustment (equal to ``base_lr`` for AdamW).
    """
    groups = list(getattr(optimizer, "optimizer", optimizer).param_groups)
    group_of_name: dict[str, int] = {}
    for gi, group in enumerate(groups):
        for pname in group.get("param_names", []):
            group_of_name[pname] = gi

    def group_for(route: ParamRoute) -> int | None:
        if route.name in group_of_name:
            return group_of_name[route.name]
        tagged = [gi for gi, g in enumerate(groups) if g.get("optimizer", "adamw") == route.optimizer]
        return tagged[0] if len(tagged) == 1 else None

    group_rows = []
    for gi, group in enumerate(groups):
        n_params = sum(p.numel() for p in group["params"])
        group_rows.append(
            [
                str(gi),
                str(group.get("name", "")),
                str(group.get("optimizer", "adamw")),
                f"{_base_lr(group):.3e}",
                f"{group.get('weight_decay', 0.0):g}",
                str(len(group["params"])),
                f"{n_params:,}",
            ]
        )
    total_tensors = sum(len(g["params"]) for g in groups)
    total_params = sum(p.numel() for g in groups for p in g["params"])
    group_rows.append(["", "total", "", "", "", str(total_tensors), f"{total_params:,}"])

    param_rows = []
    for route in routes:
        gi = group_for(route)
        group = groups[gi] if gi is not None else None
        if group is None:
            base = eff = "-"
        else:
            lr = _base_lr(group)
            scale = muon_lr_scale(route.shape, group.get("adjust_lr_fn")) if route.optimizer == MUON else 1.0
            base, eff = f"{lr:.3e}", f"{lr * scale:.3e}"
        param_rows.append(
            [
                route.name,
                "x".join(str(s) for s in route.shape) or "scalar",
                route.optimizer,
                "-" if gi is None else str(gi),
                base,
                eff,
                f"{route.numel:,}",
                route.reason,
            ]
        )

    by_opt: dict[str, tuple[int, int]] = {}
    for route in routes:
        n, k = by_opt.get(route.optimizer, (0, 0))
        by_opt[route.optimizer] = (n + 1, k + route.numel)
    summary = ", ".join(f"{opt}: {n} tensors / {k:,} params" for opt, (n, k) in sorted(by_opt.items()))

    lines = [f"optimizer {type(optimizer).__name__}: {len(groups)} param group(s)"]
    lines += _table(["#", "group", "optimizer", "base_lr", "wd", "tensors", "params"], group_rows, {0, 5, 6})
    lines.append("")
    lines.append(f"trainable parameters ({len(routes)}; {summary})")
    lines += _table(
        ["name", "shape", "optimizer", "group", "base_lr", "eff_lr", "params", "reason"],
        param_rows,
        {3, 6},
    )
    return "\n".join(lines)
