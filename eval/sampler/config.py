"""Sampler settings (torch-free, so that configs holding them compose without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.config.errors import ConfigError

# The V2V masks the sampler knows (eval.sampler.modes builds them); here so that config checks need no torch.
V2V_MASKS = ("lip", "face", "head")


@dataclass
class GuidanceConfig:
    """Classifier-free guidance scales (1 = off; the paper does not fix them)."""

    audio: float = 2.0  # audio vs zeroed audio features
    text: float = 1.0  # caption vs empty caption


@dataclass
class InversionConfig:
    """RASA-style inversion editing (:mod:`eval.sampler.inversion`): which source features steer the first steps.

    Each share ``τ`` is of the denoising steps, counted from the first (pure noise); RASA's defaults are
    ``τ_s = 0.2``, ``τ_a = 0.2``, ``τ_f = 0.4``.

    Attributes:
        shape_steps: ``τ_s``: steps whose self-attention queries are the source's (layout, Eq. 2).
        speaking_steps: ``τ_a``: steps whose audio cross-attention queries and keys are the source's (Eq. 3).
        temporal_steps: ``τ_f``: steps whose self-attention queries and keys are the source's (its attention map).
        fixed_point_iters: Fixed-point iterations per inversion step (at least 1: the last one records the
            features the edit's step receives; each costs a DiT pass and shrinks the reconstruction error).
    """

    shape_steps: float = 0.2
    speaking_steps: float = 0.2
    temporal_steps: float = 0.4
    fixed_point_iters: int = 2


def check_inversion(cfg: InversionConfig, prefix: str = "sampler.inversion.") -> None:
    """Fail on inversion settings the sampler cannot use, naming the key.

    Raises:
        ConfigError: A share outside ``[0, 1]`` or fewer than one iteration.
    """
    for key in ("shape_steps", "speaking_steps", "temporal_steps"):
        value = getattr(cfg, key)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(prefix + key, value, "expected a share of the denoising steps in [0, 1]")
    if cfg.fixed_point_iters < 1:
        raise ConfigError(
            prefix + "fixed_point_iters",
            cfg.fixed_point_iters,
            "expected >= 1 (the last iteration records the features the edit's step receives)",
        )


@dataclass
class SamplerConfig:
    """Euler sampling settings.

    Attributes:
        num_steps: Euler steps (40 in the paper).
        timestep_loc: Location of the time shift; ``None`` takes the training config's
            ``objective.timestep_loc`` so sampling spends its steps where training put its timesteps.
        guidance: Classifier-free guidance scales.
        seed: Seed of the initial noise.
        block_size: Latent frames per TAPSF inference block; longer videos are denoised blockwise
            (17 latent frames = 136 video frames in the paper); 0 never splits.
        shift: Latent frames the block partition moves at each early/late step.
        unshifted_fraction: Middle share of the steps without a shift (75% in the paper).
        long_video: How videos longer than ``block_size`` are denoised: ``tapsf`` (all blocks every step,
            the paper's choice) or ``prefix`` (window after window with a clean prefix, AnyExpress §3.3;
            only for T2V/I2V, where every frame but the first is generated).
        prefix_frames: Prefix mode: clean latent frames carried over from the previous window.
        anchor_alignment: Prefix mode: re-normalise later windows to the first window's statistics.
        frame_references: Give a fully synthetic block (every token generated: long I2V, long additions)
            full-frame reference tokens of the closest clean latent frames before and after it, at their
            Eq. 7 forward–backward RoPE indices (paper §3.4).
        teacache_threshold: TeaCache (paper §3.4: the middle, non-shifting steps of TAPSF): skip the DiT's
            blocks while the accumulated rescaled change of their modulated input stays below this
            (:mod:`eval.sampler.teacache`; TeaCache4LTX-Video: 0.03 for about 1.6×); 0 turns it off.
        inversion: Settings of inversion editing (``eval.run``'s ``v2v_invert`` row).
    """

    num_steps: int = 40
    timestep_loc: float | None = None
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    seed: int = 0
    block_size: int = 17
    shift: int = 5
    unshifted_fraction: float = 0.75
    frame_references: bool = True
    long_video: str = "tapsf"  # "tapsf" or "prefix" (AnyExpress progressive prefix conditioning; T2V/I2V)
    prefix_frames: int = 4  # prefix mode: clean latent frames carried into the next window
    anchor_alignment: bool = True  # prefix mode: align later windows to the first window's statistics
    teacache_threshold: float = 0.0  # TeaCache on the non-shifting middle steps; 0 = off
    inversion: InversionConfig = field(default_factory=InversionConfig)
