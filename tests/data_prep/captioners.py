"""A captioner plugged in through ``features.captioner`` in the tests."""

import numpy as np


def brightness_caption(frames: np.ndarray, fps: float, source: str) -> str:
    """Describe the clip by its mean brightness (deterministic, cheap)."""
    return f"a person talking, brightness {int(frames.mean())}, {fps:g} fps"
