"""Fitting an LTX-architecture Video-VAE to a corpus of clips: ``python -m trainer.vae_fit``.

``python -m trainer.vae_fit shards=<glob> output_dir=<folder> [image_steps=…] [clip_steps=…] [arch.*=…]``
(the options and their checks: :mod:`trainer.vae_fit_config`).

The VAE is diffusers' ``AutoencoderKLLTXVideo`` (32×32 spatial, 8× temporal compression; widths and latent
channels from ``arch``), fitted by reconstruction (squared error, weighted ``mouth_weight``× inside the
lower-face boxes, where a lip-sync model's output is judged), a KL term on its diagonal posterior, and a
motion term on what changes inside each 8-frame latent group (:func:`trainer.vae_fit_loss.fit_step`; the clips
and the windows it trains on: :mod:`trainer.vae_fit_data`). It is how
talkdit makes the VAE of its tiny pretrained base (:mod:`launch.tiny_base`).

Two phases, because a tiny LTX VAE learns space much faster than time: ``image_steps`` on single frames
(the causal encoder's frame-0 path, one latent frame each) teach the spatial code; ``clip_steps`` on clips
then teach the 8-frame temporal code, mostly on crops around the lower face (where a talking head moves
within a latent frame) and every ``crop_every``-th step on whole frames. The encoder's log-variance starts
small so that the decoder first learns from the signal rather than from posterior noise.

A third phase, ``decoder_steps``, trains the decoder alone on whole clips, decoding the frozen encoder's
posterior means (what a DiT's latents are decoded like). The latent space does not move, so a DiT trained
on the VAE's latents stays valid: with ``init_from`` (a fitted VAE folder) and only ``decoder_steps``, it
refines the decoder of a VAE whose latents a model already uses, as Stable Diffusion's ft-MSE decoder did.

When the fit ends, the per-channel mean and standard deviation of the posterior means of the corpus are
stored as the VAE's ``latents_mean``/``latents_std`` (diffusers' LTX latent normalisation), so the DiT
reads unit-scale latents, and the folder is written with ``save_pretrained`` (atomically) with
``talkdit_fit.json`` (settings, losses, held-out PSNR). The fit is resumable: its state (weights,
optimiser, step, RNG) is saved every ``checkpoint_every`` steps in ``<output_dir>.fit/`` and a rerun
continues from it; a finished ``output_dir`` is reused as is.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.atomic import atomic_dir, atomic_path
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config
from trainer.config.schema import VAEConfig
from trainer.data.schema import ShardSampleError
from trainer.model.vae import load_vae
from trainer.vae_fit_config import VAEFitConfig, register, validate
from trainer.vae_fit_data import WindowSampler, read_fit_clips
from trainer.vae_fit_loss import fit_step, latent_statistics, reconstruction_psnr

log = logging.getLogger("talkdit.vae_fit")

FIT_REPORT = "talkdit_fit.json"


def require_ltx_compression(vae, source: str) -> None:
    """Refuse a VAE that does not compress like LTX-Video's (32×32 spatial, 8× temporal).

    Raises:
        ValueError: Naming ``source`` (the setting the VAE came from) and its factors.
    """
    ltx = VAEConfig()  # model.vae's factors, LTX-Video's, which the tiny base's configs keep
    got = (vae.spatial_compression_ratio, vae.temporal_compression_ratio)
    if got != (ltx.spatial_compression, ltx.temporal_compression):
        raise ValueError(
            f"{source} compresses {got[0]}x spatially and {got[1]}x temporally; the tiny base keeps "
            f"LTX-Video's {ltx.spatial_compression}x and {ltx.temporal_compression}x"
        )


def build_vae(arch: dict[str, Any], initial_logvar: float, seed: int):
    """A freshly initialised ``AutoencoderKLLTXVideo`` whose posterior starts narrow.

    Raises:
        ValueError: The architecture does not compress 32×32×8 (names the arguments).
    """
    from diffusers import AutoencoderKLLTXVideo

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            vae = AutoencoderKLLTXVideo(**arch)
        except TypeError as err:
            raise ValueError(f"arch: not AutoencoderKLLTXVideo arguments: {err}") from err
    require_ltx_compression(vae, "arch")
    with torch.no_grad():
        # The encoder's last output channel is the (shared) log-variance of the posterior.
        vae.encoder.conv_out.conv.bias[-1].fill_(initial_logvar)
    return vae


def load_fitted_vae(folder: str):
    """A fitted VAE folder's ``AutoencoderKLLTXVideo`` (the start of a refinement), trainable, in training mode.

    Raises:
        ValueError: The folder lacks its weights or holds a VAE that does not compress 32×32×8 (named).
    """
    try:
        vae = load_vae(VAEConfig(source="diffusers", path=folder, subfolder=""))
    except FileNotFoundError as err:
        raise ValueError(f"init_from={folder}: {err}") from err
    return vae.requires_grad_(True).train()


def learning_rate(cfg: VAEFitConfig, step: int, total: int) -> float:
    """Linear warm-up, then a cosine from ``lr`` down to ``lr · lr_final`` at the last step."""
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / max(total - cfg.warmup_steps - 1, 1)))
    return cfg.lr * warm * (cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _state_dir(output_dir: Path) -> Path:
    return output_dir.with_name(output_dir.name + ".fit")


def fit_vae(cfg: VAEFitConfig, progress: bool = True) -> Path:
    """Fit (or resume fitting, or reuse) the VAE described by ``cfg``.

    Returns:
        ``output_dir``, a diffusers ``AutoencoderKLLTXVideo`` folder with ``talkdit_fit.json``.

    Raises:
        ValueError: Bad settings or clips of sizes the VAE cannot take.
        FileNotFoundError: No shard matches ``shards``.
        ShardSampleError: A sample does not decode.
    """
    validate(cfg)
    output_dir = Path(cfg.output_dir)
    report_file = output_dir / FIT_REPORT
    if report_file.is_file() and not cfg.overwrite:
        saved = json.loads(report_file.read_text()).get("config", {})
        wanted = json.loads(json.dumps(asdict(cfg)))  # as the report stores it (tuples become lists)
        differ = sorted(k for k, v in wanted.items() if k in saved and k != "overwrite" and saved[k] != v)
        if differ:
            raise ValueError(
                f"{output_dir} holds a VAE fitted with other settings ({', '.join(differ)}); "
                "remove it, or pass overwrite=true, to fit again"
            )
        log.info("VAE already fitted: %s", output_dir)
        return output_dir
    clips = read_fit_clips(cfg.shards, cfg.max_clips)
    held_sources = list(dict.fromkeys(c.source for c in clips))[: cfg.holdout_videos]
    holdout = [c for c in clips if c.source in held_sources]
    train = [c for c in clips if c.source not in held_sources]
    if not train:
        raise ValueError(
            f"shards={cfg.shards}: clips of {len(set(c.source for c in clips))} source videos, all held out "
            f"(holdout_videos={cfg.holdout_videos}); add videos or lower holdout_videos"
        )
    sizes = {c.frames.shape[1:3] for c in clips}
    height, width = next(iter(sizes))
    if len(sizes) > 1 or height % 32 or width % 32:
        raise ValueError(f"shards={cfg.shards}: clips of sizes {sorted(sizes)}; need one size, sides multiples of 32")
    short = min(c.frames.shape[0] for c in clips)
    for key, steps in (
        ("clip_frames", cfg.clip_steps),
        ("crop_frames", cfg.clip_steps),
        ("decoder_frames", cfg.decoder_steps),
    ):
        if steps and short < getattr(cfg, key):
            raise ValueError(f"{key}={getattr(cfg, key)} but the shortest clip has {short} frames")
    if cfg.crop > min(height, width):
        raise ValueError(f"crop={cfg.crop} is larger than the clips ({height}x{width})")

    torch.manual_seed(cfg.seed)
    vae = load_fitted_vae(cfg.init_from) if cfg.init_from else build_vae(cfg.arch, cfg.initial_logvar, cfg.seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, history = 0, []
    state_file = _state_dir(output_dir) / "state.pt"
    if state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        if state["config"] != asdict(cfg) | {"overwrite": state["config"]["overwrite"]}:
            raise ValueError(f"{state_file} was saved by a fit with other settings; remove it to start over")
        vae.load_state_dict(state["vae"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        gen.set_state(state["gen"])
        step, history = state["step"], state["history"]
        log.info("resuming the VAE fit at step %d from %s", step, state_file)

    total = cfg.image_steps + cfg.clip_steps + cfg.decoder_steps
    sampler = WindowSampler(train, cfg.mouth_weight, rng)
    bar = _Progress(total, step, progress)
    vae.train()
    start = time.perf_counter()
    while step < total:
        decoder_only = step >= cfg.image_steps + cfg.clip_steps
        if decoder_only:
            phase, (video, weight) = "decoder", sampler.batch(cfg.decoder_batch, cfg.decoder_frames)
        elif step < cfg.image_steps:
            phase, (video, weight) = "frames", sampler.batch(cfg.image_batch, 1)
        elif cfg.crop and (step - cfg.image_steps) % cfg.crop_every:
            phase, (video, weight) = "crops", sampler.batch(cfg.crop_batch, cfg.crop_frames, cfg.crop)
        else:
            phase, (video, weight) = "clips", sampler.batch(cfg.clip_batch, cfg.clip_frames)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step, total)
        vae.encoder.requires_grad_(not decoder_only)
        out = fit_step(vae, video, weight, cfg.kl_weight, cfg.motion_weight, gen, decoder_only)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        step += 1
        history.append([step, float(out["rec"]), float(out["kl"]), float(out["motion"])])
        bar.update(step, {"rec": float(out["rec"]), "motion": float(out["motion"]), "phase": phase})
        if step % cfg.checkpoint_every == 0 and step < total:
            _save_state(state_file, cfg, vae, optimizer, rng, gen, step, history)
    bar.close()

    vae.eval()
    vae.encoder.requires_grad_(True)
    if cfg.init_from is None or cfg.image_steps + cfg.clip_steps > 0:
        # Without phases 1-2 the encoder did not move: the initial VAE's statistics stay exactly as they were.
        mean, std = latent_statistics(vae, train[:64], cfg.clip_frames)
        vae.latents_mean.copy_(mean)
        vae.latents_std.copy_(std)
    psnr = reconstruction_psnr(vae, holdout, 2 * vae.temporal_compression_ratio + 1)  # three latent frames
    report = {
        "config": asdict(cfg),
        "steps": step,
        "clips": {
            "train": len(train),
            "holdout": len(holdout),
            "holdout_videos": held_sources,
            "size": [height, width],
        },
        "final_rec_mse": float(np.mean([h[1] for h in history[-20:]])) if history else None,
        "holdout_psnr_db": psnr,
        "parameters": sum(p.numel() for p in vae.parameters()),
        "seconds": time.perf_counter() - start,
    }
    with atomic_dir(output_dir, overwrite=True) as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
        (tmp / FIT_REPORT).write_text(json.dumps(report, indent=2) + "\n")
    state_file.unlink(missing_ok=True)
    if state_file.parent.is_dir() and not any(state_file.parent.iterdir()):
        state_file.parent.rmdir()
    log.info("VAE fitted in %d steps: held-out PSNR %s dB, written to %s", step, _fmt(psnr), output_dir)
    return output_dir


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _save_state(path: Path, cfg: VAEFitConfig, vae, optimizer, rng, gen, step: int, history: list) -> None:
    state = {
        "config": asdict(cfg),
        "vae": vae.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng.bit_generator.state,
        "gen": gen.get_state(),
        "step": step,
        "history": history,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


class _Progress:
    """A tqdm bar on a terminal; otherwise one log line every ``every`` steps (a redirected log stays readable)."""

    def __init__(self, total: int, initial: int, enabled: bool, every: int = 50):
        self.total, self.every, self.enabled = total, every, enabled
        self.step = self.window_step = initial
        self.window_time = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="vae fit", unit="step")

    def update(self, step: int, values: dict) -> None:
        """Record that ``step`` is done, with the values to show."""
        shown = {k: f"{v:.4f}" if isinstance(v, float) else v for k, v in values.items()}
        if self.bar is not None:
            self.bar.update(step - self.step)
            self.bar.set_postfix(shown)
        elif self.enabled and (step % self.every == 0 or step == self.total):
            now = time.perf_counter()
            per_step = (now - self.window_time) / max(step - self.window_step, 1)
            parts = " ".join(f"{k}={v}" for k, v in shown.items())
            eta = per_step * (self.total - step)
            log.info("vae fit step %d/%d %s (%.2f s/step, eta %.0f s)", step, self.total, parts, per_step, eta)
            self.window_step, self.window_time = step, now
        self.step = step

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


COMMAND = Command(
    module="trainer.vae_fit",
    config_name="vae_fit",
    synopsis="shards=<shards> output_dir=<folder> [image_steps=…] [clip_steps=…] [arch.…=…] ...",
    summary="""Fit an LTX-architecture VAE (diffusers AutoencoderKLLTXVideo) to a corpus's shards: reconstruction
(weighted inside the lower-face boxes), KL and a within-latent-frame motion term; resumable (output_dir.fit/),
written as a diffusers VAE folder with the corpus's latent statistics and a report (talkdit_fit.json).""",
    examples=("python -m trainer.vae_fit shards='corpus/prep/shards/*.tar' output_dir=tiny/vae",),
    register=register,
)


def _run(overrides: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    register()
    out = fit_vae(load_config("vae_fit", overrides))
    print(f"vae: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``key=value`` arguments); bad input exits with status 2 and one line."""
    return run_command(COMMAND, argv, _run, errors=(ValueError, ShardSampleError))


if __name__ == "__main__":
    sys.exit(main())
