"""Adding VAE latents to existing shards: ``python -m data_prep.latents``.

``python -m data_prep.latents shards=<glob> output_dir=<folder> vae.path=<diffusers folder> [vae.subfolder=vae]``

Each sample is copied member for member into a shard of the same name under ``output_dir``, with the VAE
posterior of its clip and of each reference frame added (``latent_mean.npy``, ``latent_logvar.npy``,
``ref_latent_mean.npy``, ``ref_latent_logvar.npy``, float16; :func:`data_prep.samples.attach_latents`'s
layout), so training reads latents instead of running the VAE every step. This is how data prepared before
a VAE existed (talkdit's tiny base fits its VAE on the shards themselves) gets latents afterwards, and how
shards move to another VAE. Shards already written are skipped (a rerun resumes); each is written to a
temporary file and renamed, with its ``.idx.json`` index.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from omegaconf import MISSING

from data_prep.media import encode_npy
from trainer.atomic import atomic_path, atomic_write_text
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config, register_schema
from trainer.config.schema import VAEConfig
from trainer.data.decode import decode_video
from trainer.data.schema import LATENT_MEMBERS, ShardSampleError
from trainer.model.vae import encode_posterior

log = logging.getLogger("talkdit.latents")


@dataclass
class LatentsConfig:
    """Options of ``python -m data_prep.latents``.

    Attributes:
        shards: Shards to add latents to (brace pattern, glob or list).
        output_dir: Folder of the new shards (same file names).
        vae: The VAE (a diffusers folder, an LTX single file, or ``source=random`` for tests).
    """

    shards: str = MISSING
    output_dir: str = MISSING
    vae: VAEConfig = field(default_factory=VAEConfig)


def _posterior(vae, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, logvar = encode_posterior(vae, torch.from_numpy(frames))
    return mean.numpy(), logvar.numpy()


def latent_members(vae, video: np.ndarray, refs: np.ndarray) -> dict[str, bytes]:
    """The four latent members of one sample.

    Args:
        vae: The VAE.
        video: Clip frames ``[F, H, W, 3]`` uint8 (``F = 8k + 1``).
        refs: Reference frames ``[R, H, W, 3]`` uint8.

    Returns:
        Member name → ``.npy`` bytes (float16): ``[C, T, H/32, W/32]`` and ``[C, R, H/32, W/32]`` arrays.
    """
    mean, logvar = _posterior(vae, video[None])
    r_mean, r_logvar = _posterior(vae, refs[:, None])  # one latent frame per reference frame
    arrays = {
        "latent_mean": mean[0],
        "latent_logvar": logvar[0],
        "ref_latent_mean": r_mean[:, :, 0].transpose(1, 0, 2, 3),
        "ref_latent_logvar": r_logvar[:, :, 0].transpose(1, 0, 2, 3),
    }
    return {f"{name}.npy": encode_npy(arr.astype(np.float16)) for name, arr in arrays.items()}


def add_latents(cfg: LatentsConfig) -> list[Path]:
    """Write a copy of every shard with VAE latents added; returns the shards of ``output_dir``.

    Raises:
        FileNotFoundError: No shard matches, or the VAE's files are missing.
        ShardSampleError: A sample lacks its video or references, or they do not decode.
    """
    from trainer.data.datamodule import expand_shards
    from trainer.model.vae import load_vae

    urls = expand_shards(cfg.shards, key="shards")
    out = Path(cfg.output_dir)
    vae = load_vae(cfg.vae)
    written = []
    for url in urls:
        target = out / Path(url).name
        written.append(target)
        if target.is_file() and target.with_suffix(".idx.json").is_file():
            continue
        entries = []
        with atomic_path(target) as tmp:
            writer = wds.TarWriter(str(tmp), mtime=0.0)
            for raw in wds.tarfile_samples([{"url": url}]):
                key = raw["__key__"]
                for member in ("video.mp4", "ref.mp4"):
                    if member not in raw:
                        raise ShardSampleError(url, key, f"member '{member}' is missing")
                video, _ = decode_video(raw["video.mp4"], url, key, "video.mp4")
                refs, _ = decode_video(raw["ref.mp4"], url, key, "ref.mp4")
                sample = {k: v for k, v in raw.items() if not k.startswith("__") or k == "__key__"}
                sample = {k: v for k, v in sample.items() if k not in LATENT_MEMBERS}
                sample.update(latent_members(vae, video, refs))
                writer.write(sample)
                entries.append({"key": key, "members": sorted(k for k in sample if not k.startswith("__"))})
            writer.close()
        atomic_write_text(
            target.with_suffix(".idx.json"), json.dumps({"shard": target.name, "samples": entries}, indent=1)
        )
        log.info("latents added: %s (%d samples)", target, len(entries))
    return written


def register() -> None:
    """Register :class:`LatentsConfig` as the config ``latents`` (composed like every entry point's)."""
    register_schema("latents", LatentsConfig)


COMMAND = Command(
    module="data_prep.latents",
    config_name="latents",
    synopsis="shards=<shards> vae.path=<VAE folder> output_dir=<folder> [key=value ...]",
    summary="""Add a VAE's posterior (latent mean and log-variance) to existing shards, every other member kept, so
that training never runs the VAE on its clips. Resumable (finished shards are skipped) and atomic per shard.""",
    examples=(
        "python -m data_prep.latents shards='prep/shards/*.tar' vae.path=tiny/vae output_dir=prep/latent_shards",
    ),
    register=register,
)


def _run(overrides: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    register()
    cfg: LatentsConfig = load_config("latents", overrides)
    written = add_latents(cfg)
    print(f"{len(written)} shards with latents in {cfg.output_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``key=value`` arguments); bad input exits with status 2 and one line."""
    return run_command(COMMAND, argv, _run, errors=(ValueError, ShardSampleError))


if __name__ == "__main__":
    sys.exit(main())
