"""The process-global RNG state of a rank, as checkpoints keep it.

Noise, flow times, conditions and posterior samples are drawn from a generator seeded per step by
``(seed, step, data-parallel rank)`` and need no saved state. Dropout (LoRA dropout in stage 2) draws from
the process's global torch RNG (the CUDA generator of the rank's device on GPU), whose position only a
checkpoint can carry across a restart: without it a resumed run would replay the dropout masks of the
run's first steps. Python's and numpy's global generators are kept too, for any code that draws from them.

The state is plain containers and tensors so that checkpoints still load with ``weights_only=True``.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def capture_rng_state() -> dict:
    """This process's global RNG state: python, numpy, torch CPU and (once initialised) the current CUDA device."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    """Set this process's global RNGs to a state of :func:`capture_rng_state`.

    A CUDA state is restored on the current device when CUDA is available; a state saved without one (a CPU
    run) leaves the CUDA generator as it is.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
