"""Options of ``python -m eval.run`` and the sampling size rule (torch-free: ``--help`` and errors stay fast)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from eval.sampler.config import V2V_MASKS, SamplerConfig, check_inversion
from trainer.config.compose import register_schema
from trainer.config.errors import ConfigError

MODES = {
    "v2v_self": ("v2v", "Table 2: V2V self-reenactment"),
    "v2v_novel": ("v2v", "Table 2: V2V with novel audio"),
    "v2v_invert": ("invert_edit", "Table 2: V2V with novel audio, inversion editing (RASA)"),
    "i2v": ("i2v", "Table 3: I2V"),
}
TABLES = {"table2": ("v2v_self", "v2v_novel", "v2v_invert"), "table3": ("i2v",)}
# How Sync-C/Sync-D/offset are computed (:mod:`eval.metrics.sync_official`, which reads this tuple).
SYNC_PROTOCOLS = ("direct", "official")


@dataclass
class EvalConfig:
    """Options of ``python -m eval.run``.

    Attributes:
        checkpoint: Training checkpoint (``.ckpt`` file or DeepSpeed folder).
        shards: Shard glob of held-out clips (the data_prep schema).
        output_dir: Samples and tables go here.
        modes: Table rows to produce (``v2v_self``, ``v2v_novel``, ``i2v``; ``v2v_invert``: the novel audio by
            inversion editing, :mod:`eval.sampler.inversion`, with ``sampler.inversion``'s settings).
        max_clips: Clips evaluated (the first ones of the shards, in order).
        size: ``[height, width]`` the model samples at, multiples of 32; null: each clip's size scaled into
            the checkpoint's training range (``data.min_megapixels``–``data.max_megapixels``), aspect kept, sides
            rounded to multiples of 32. Samples are resized back to the clip's size for the metrics and files.
        v2v_mask: V2V mask: ``lip`` (as trained), ``face`` or ``head``.
        identity_refs: Prepend the clips' face reference tokens.
        sync_protocol: ``direct`` or ``official`` (:mod:`eval.metrics.sync_official`).
        sampler: Euler steps, guidance, seed.
        device: Where the models run.
    """

    checkpoint: str = MISSING
    shards: str = MISSING
    output_dir: str = "eval_out"
    modes: list[str] = field(default_factory=lambda: ["v2v_self", "v2v_novel", "i2v"])
    max_clips: int = 8
    size: list[int] | None = None
    v2v_mask: str = "lip"
    identity_refs: bool = True
    sync_protocol: str = "direct"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    device: str = "cpu"


def register() -> None:
    """Register :class:`EvalConfig` as the config ``eval`` (composed like every entry point's)."""
    register_schema("eval", EvalConfig)


# Rows only eval.run samples: validation during training samples the others.
EVAL_ONLY_MODES = ("v2v_invert",)


def check_modes(modes: list[str], v2v_mask: str, prefix: str = "") -> None:
    """Check sampling modes and the V2V mask: ``eval.run``'s options, and validation's (``prefix="validation."``).

    Raises:
        ConfigError: ``modes`` is empty, repeats a mode or names one not in :data:`MODES` (validation: nor one of
            :data:`EVAL_ONLY_MODES`), or ``v2v_mask`` is not one of :data:`eval.sampler.config.V2V_MASKS` (the key
            named with ``prefix``).
    """
    allowed = [m for m in MODES if not prefix or m not in EVAL_ONLY_MODES]
    if not modes or any(m not in allowed for m in modes) or len(set(modes)) != len(modes):
        expected = f"expected a non-empty list of distinct modes from {allowed}"
        raise ConfigError(f"{prefix}modes", list(modes), expected)
    if v2v_mask not in V2V_MASKS:
        raise ConfigError(f"{prefix}v2v_mask", v2v_mask, f"expected one of {list(V2V_MASKS)}")


def validate(cfg: EvalConfig) -> None:
    """Fail fast on options the run cannot use, naming the key.

    Raises:
        ConfigError: A bad option.
        FileNotFoundError: The checkpoint does not exist.
    """
    check_modes(cfg.modes, cfg.v2v_mask)
    if cfg.max_clips < 1:
        raise ConfigError("max_clips", cfg.max_clips, "expected >= 1")
    if cfg.sync_protocol not in SYNC_PROTOCOLS:
        raise ConfigError("sync_protocol", cfg.sync_protocol, f"expected {' or '.join(SYNC_PROTOCOLS)}")
    if cfg.sampler.num_steps < 1:
        raise ConfigError("sampler.num_steps", cfg.sampler.num_steps, "expected >= 1")
    check_inversion(cfg.sampler.inversion)
    if "v2v_invert" in cfg.modes and cfg.sampler.teacache_threshold > 0:
        # TeaCache skips the blocks whose attention features inversion editing records and replaces.
        raise ConfigError(
            "sampler.teacache_threshold", cfg.sampler.teacache_threshold, "expected 0 with the v2v_invert row"
        )
    check_size(cfg.size)
    if not Path(cfg.checkpoint).exists():
        raise FileNotFoundError(f"checkpoint={cfg.checkpoint}: no such file or folder")


def check_size(size: list[int] | None, spatial: int | None = None) -> None:
    """A ``size`` option: ``[height, width]`` of positive pixels, multiples of the VAE's ``spatial`` factor.

    Config checks call it without ``spatial`` (the model's VAE is not read yet); the entry points call it
    again with ``model.vae.spatial_compression`` once they know it, before a model is built.

    Raises:
        ConfigError: Anything else.
    """
    if size is None:
        return
    if len(size) != 2 or any(int(s) < 1 for s in size):
        raise ConfigError("size", list(size), "expected [height, width] in pixels, both positive")
    if spatial is not None and any(int(s) % spatial for s in size):
        raise ConfigError(
            "size", list(size), f"expected multiples of {spatial}, the VAE's spatial factor (pixels per token side)"
        )


def sample_size(height: int, width: int, min_mp: float, max_mp: float, spatial: int) -> tuple[int, int]:
    """The size a clip is sampled at: its area brought into the training range, aspect kept, sides on the token grid.

    The area is brought into ``[min_mp, max_mp]``; sides are multiples of the VAE's spatial factor ``spatial``
    (``model.vae.spatial_compression``). Of the four roundings (each side down or up to a multiple of
    ``spatial``) the one inside the area range whose aspect is closest to the clip's wins; when none is inside
    (a very narrow range), the one closest in area.

    Args:
        height: Clip height in pixels.
        width: Clip width in pixels.
        min_mp: Smallest training area, megapixels.
        max_mp: Largest training area, megapixels.
        spatial: Pixels per latent token side.

    Returns:
        ``(height, width)``, multiples of ``spatial``.
    """
    area = height * width / 1e6
    scale = math.sqrt(min(max(area, min_mp), max_mp) / area)
    h, w = height * scale, width * scale
    candidates = {
        (max(spatial, fh(h / spatial) * spatial), max(spatial, fw(w / spatial) * spatial))
        for fh in (math.floor, math.ceil)
        for fw in (math.floor, math.ceil)
    }

    def aspect_error(c: tuple[int, int]) -> float:
        return abs(math.log(c[0] / c[1] * width / height))

    def area_error(c: tuple[int, int]) -> float:
        a = c[0] * c[1] / 1e6
        return max(min_mp - a, a - max_mp, 0.0)

    inside = [c for c in candidates if area_error(c) == 0.0]
    if inside:
        return min(inside, key=lambda c: (aspect_error(c), abs(c[0] * c[1] - h * w)))
    return min(candidates, key=lambda c: (area_error(c), aspect_error(c)))
