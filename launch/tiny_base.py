"""talkdit's pretrained tiny base: a VAE, a text encoder and a base-stage DiT fitted to the synthetic corpus.

``python -m launch.tiny_base shards=<training shards> out_dir=<folder> [vae_image_steps=…] [base_steps=…]``

Steps, each reused when a previous run finished it (so the demo fits the base once and reuses it):

1. ``<out_dir>/parts/vae``: an LTX-architecture VAE fitted to the shards' clips (:mod:`trainer.vae_fit`);
2. ``<out_dir>/latent_shards``: the shards with that VAE's latents added (:mod:`data_prep.latents`), so that
   training reads latents instead of running the VAE every step (the demo's stages use them too);
3. ``<out_dir>/parts/text_encoder``, ``tokenizer``: the tiny T5 encoder of ``model=tiny_base`` (randomly
   initialised and frozen: the corpus has one caption, so its embedding is a learned constant to the DiT);
4. ``<out_dir>/base_run``: the base stage (every DiT weight, no audio adapter; ``experiment=tiny_base``)
   on the latent shards, with that VAE and text encoder, resumable;
5. ``<out_dir>/parts/vae_decoder<N>`` (only with ``vae_decoder_steps=N``): the VAE with its decoder refined
   alone for ``N`` steps on the frozen encoder's latents of ``decoder_shards`` (:mod:`trainer.vae_fit`'s
   phase 3), which leaves the latents, and so the base DiT, exactly as they were;
6. ``<out_dir>/base_model`` (``base_model_decoder<N>`` with a refined decoder): the base checkpoint exported
   as a diffusers folder in the LTX-Video layout (``transformer/``, ``vae/``, ``text_encoder/``,
   ``tokenizer/``), which ``model=tiny_base`` loads exactly like ``model=ltxv_13b`` loads LTX-Video.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from trainer.atomic import atomic_dir
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config, register_schema
from trainer.config.errors import ConfigError

log = logging.getLogger("talkdit.tiny_base")

BASE_MODEL = "base_model"
PARTS = "parts"
LATENT_SHARDS = "latent_shards"
# The decoder refinement's only job is the region a dub changes: it weighs the lower face twice the fit's 5.
DECODER_MOUTH_WEIGHT = 10.0


@dataclass
class TinyBaseConfig:
    """Options of ``python -m launch.tiny_base``.

    Attributes:
        shards: Training shards (data_prep's output for the synthetic corpus).
        out_dir: Where the parts, the base run and ``base_model/`` go.
        vae_image_steps: VAE fit steps on single frames.
        vae_clip_steps: VAE fit steps on clips.
        vae_decoder_steps: Steps refining the VAE's decoder alone once the base is trained (0: none).
        decoder_shards: Shards the decoder refinement reads (empty: ``shards``). More people than the base was
            fitted on teach the decoder more mouths; the encoder, and so every latent, stays as fitted.
        decoder_max_clips: Clips the decoder refinement holds in memory (the first ones in shard order).
        base_steps: Base-stage steps of the DiT.
        base_overrides: Extra trainer overrides of the base stage.
        seed: Seed of the VAE fit and of the base stage.
    """

    shards: str = MISSING
    out_dir: str = MISSING
    vae_image_steps: int = 800
    vae_clip_steps: int = 2400
    vae_decoder_steps: int = 0
    decoder_shards: str = ""
    decoder_max_clips: int = 2048
    base_steps: int = 1500
    base_overrides: list[str] = field(default_factory=list)
    seed: int = 0


def base_model_dir(cfg: TinyBaseConfig) -> Path:
    """Where the base folder goes: ``base_model``, or ``base_model_decoder<N>`` with a refined decoder.

    Both share the fitted parts and the base run, which the decoder refinement does not change.
    """
    suffix = f"_decoder{cfg.vae_decoder_steps}" if cfg.vae_decoder_steps else ""
    return Path(cfg.out_dir) / (BASE_MODEL + suffix)


def latent_shards(cfg: TinyBaseConfig) -> str:
    """Glob of the training shards with the tiny base VAE's latents (written by :func:`build_tiny_base`)."""
    return f"{Path(cfg.out_dir) / LATENT_SHARDS}/*.tar"


def base_stage_overrides(cfg: TinyBaseConfig, parts: Path, run_dir: Path) -> list[str]:
    """Trainer overrides of the base stage: a random DiT, the fitted VAE and the tiny text encoder from ``parts``."""
    return [
        "experiment=tiny_base",
        f"model.transformer.path={parts}",
        f"data.shards={latent_shards(cfg)}",
        f"loop.max_steps={cfg.base_steps}",
        f"run_dir={run_dir}",
        f"seed={cfg.seed}",
        "resume=auto",
        *cfg.base_overrides,
    ]


def write_text_encoder(parts: Path) -> None:
    """Write ``model=tiny_base``'s T5 encoder and byte-level tokenizer into ``parts`` (once)."""
    from trainer.config.compose import load_train_config
    from trainer.model.text_encoder import TextEncoder

    if (parts / "text_encoder").is_dir() and (parts / "tokenizer").is_dir():
        return
    cfg = load_train_config(["experiment=tiny_base", "data.shards=unused", f"model.transformer.path={parts}"])
    random_cfg = dataclasses.replace(cfg.model.text_encoder, source="random")
    encoder = TextEncoder(random_cfg)
    with (
        atomic_dir(parts / "text_encoder", overwrite=True) as enc,
        atomic_dir(parts / "tokenizer", overwrite=True) as tok,
    ):
        encoder.save_pretrained(enc, tok)


def build_tiny_base(cfg: TinyBaseConfig, progress: bool = True) -> Path:
    """Fit (or reuse) every part of the tiny base and return the ``base_model`` folder."""
    from data_prep.latents import LatentsConfig, add_latents
    from trainer.config.schema import VAEConfig
    from trainer.export import export_checkpoint
    from trainer.train import run
    from trainer.vae_fit import fit_vae
    from trainer.vae_fit_config import VAEFitConfig

    if cfg.vae_decoder_steps < 0:
        raise ConfigError("vae_decoder_steps", cfg.vae_decoder_steps, "expected >= 0 (0: no decoder refinement)")
    out = Path(cfg.out_dir)
    base = base_model_dir(cfg)
    if (base / "model_index.json").is_file():
        log.info("tiny base already built: %s", base)
        return base
    parts = out / PARTS
    t0 = time.perf_counter()
    fit_vae(
        VAEFitConfig(
            shards=cfg.shards,
            output_dir=str(parts / "vae"),
            image_steps=cfg.vae_image_steps,
            clip_steps=cfg.vae_clip_steps,
            seed=cfg.seed,
        ),
        progress=progress,
    )
    log.info("tiny base: VAE ready (%.0f s)", time.perf_counter() - t0)
    vae = VAEConfig(source="diffusers", path=str(parts), subfolder="vae")
    add_latents(LatentsConfig(shards=cfg.shards, output_dir=str(out / LATENT_SHARDS), vae=vae))
    log.info("tiny base: latents cached in %s (%.0f s)", out / LATENT_SHARDS, time.perf_counter() - t0)
    write_text_encoder(parts)
    result = run(base_stage_overrides(cfg, parts, out / "base_run"))
    log.info("tiny base: base stage done in %s (%.0f s)", result.run_dir, time.perf_counter() - t0)
    if cfg.vae_decoder_steps:
        refined = fit_vae(
            VAEFitConfig(
                shards=cfg.decoder_shards or cfg.shards,
                output_dir=str(parts / f"vae_decoder{cfg.vae_decoder_steps}"),
                init_from=str(parts / "vae"),
                image_steps=0,
                clip_steps=0,
                decoder_steps=cfg.vae_decoder_steps,
                mouth_weight=DECODER_MOUTH_WEIGHT,
                max_clips=cfg.decoder_max_clips,
                seed=cfg.seed,
            ),
            progress=progress,
        )
        log.info("tiny base: decoder refined in %s (%.0f s)", refined, time.perf_counter() - t0)
    with atomic_dir(base, overwrite=True) as tmp:
        export_checkpoint(result.last_checkpoint, tmp, overwrite=True)
        if cfg.vae_decoder_steps:
            shutil.rmtree(tmp / "vae")
            shutil.copytree(refined, tmp / "vae")
    log.info("tiny base written to %s (%.0f s)", base, time.perf_counter() - t0)
    return base


def register() -> None:
    """Register :class:`TinyBaseConfig` as the config ``tiny_base`` (composed like every entry point's)."""
    register_schema("tiny_base", TinyBaseConfig)


COMMAND = Command(
    module="launch.tiny_base",
    config_name="tiny_base",
    synopsis="shards=<training shards> out_dir=<folder> [vae_image_steps=800] [base_steps=1500] ...",
    summary="""Fit talkdit's pretrained tiny base on a corpus: an LTX-architecture VAE (trainer.vae_fit), the VAE's
latents added to the shards (data_prep.latents), a tiny T5, and every DiT weight trained by the base stage;
written as a diffusers folder in the LTX-Video layout (out_dir/base_model). Finished parts are reused.""",
    examples=("python -m launch.tiny_base shards='demo_out/data/corpora/<corpus>/prep/shards/*.tar' out_dir=tiny",),
    register=register,
)


def _run(overrides: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    register()
    base = build_tiny_base(load_config("tiny_base", overrides))
    print(f"base_model: {base}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``key=value`` arguments); bad input exits with status 2 and one line."""
    return run_command(COMMAND, argv, _run, errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
