"""Official-architecture models used by data preparation filters (SyncNet, HyperIQA), and the set a worker loads.

The networks and their scoring live in the submodules; :class:`Models` is what a worker holds of them (and of the
trainer's Whisper and VAE) once loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Models:
    """Models a worker loads once and reuses for every video.

    Attributes:
        whisper: Whisper feature extractor (always).
        syncnet: SyncNet, when the stage is on.
        hyperiqa: HyperIQA, when the stage is on.
        vae: LTX VAE, when latents are cached.
        fingerprints: Name → fingerprint of each model's weights.
    """

    whisper: object
    syncnet: object | None = None
    hyperiqa: object | None = None
    vae: object | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)
