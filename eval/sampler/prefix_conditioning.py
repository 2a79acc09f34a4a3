"""Long-video denoising by progressive prefix conditioning (``sampler.long_video=prefix``).

AnyExpress §3.3 and its Algorithm 1: the alternative to TAPSF (:mod:`eval.sampler.tapsf`) for T2V/I2V, where
every frame but the first is generated. Windows are generated one after another, each fully
denoised before the next; window ``i > 0`` starts with the last ``prefix_frames`` latent frames of
window ``i − 1`` as a clean prefix (flow time 0, kept fixed). Anchor alignment: while denoising the
first window (the anchor) the mean and standard deviation of its latents are stored after every step;
in every later window the newly generated latents are re-normalised to the anchor's statistics of the
same step, after every step. The paper does not say over which axes the statistics are taken; we use
per-sample, per-channel statistics over (frames, height, width), AdaIN-style, computed over the
generated frames only (the clean prefix is at flow time 0, the anchor's statistics at flow time
``σ_i``, so mixing them would compare different noise levels). AnyExpress also mentions statistics
"across U-Net blocks"; its Algorithm 1 aligns the latents, which is what is implemented here.

Shapes: latents are ``[B, C, T, H, W]`` (``T`` latent frames, ``H × W`` latent tokens per frame);
per-token tensors follow :func:`trainer.model.sequence.patchify` order (frame-major), ``[B, T·H·W, …]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def euler_step(latents: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """Flow-matching Euler step ``x ← x + (σ_next − σ)·v`` (``x_σ = (1−σ)x₀ + σε``, ``v = ε − x₀``)."""
    return latents + (sigma_next - sigma) * velocity.to(latents.dtype)


def prefix_windows(num_frames: int, window: int = 17, prefix_frames: int = 4) -> list[range]:
    """Windows of progressive prefix conditioning, in global latent frames.

    Window 0 is ``[0, window)``; window ``i`` starts ``prefix_frames`` before window ``i − 1`` ends;
    the last window is cut at ``T`` (it always has at least one new frame).

    Args:
        num_frames: Latent frames ``T``.
        window: Latent frames per window, prefix included.
        prefix_frames: Clean frames carried over from the previous window.

    Returns:
        Frame ranges; merging their non-prefix parts (Algorithm 2) gives ``range(T)`` exactly once.
    """
    if not 0 <= prefix_frames < window:
        raise ValueError(f"prefix_frames={prefix_frames}: must be in [0, window={window})")
    windows = [range(0, min(window, num_frames))]
    while windows[-1].stop < num_frames:
        start = windows[-1].stop - prefix_frames
        windows.append(range(start, min(start + window, num_frames)))
    return windows


def channel_stats(latents: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and standard deviation over frames and space.

    Args:
        latents: ``[B, C, T, H, W]``.
        eps: Floor of the standard deviation.

    Returns:
        ``(mean, std)``, each ``[B, C, 1, 1, 1]`` float32.
    """
    x = latents.float()
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    std = x.var(dim=(2, 3, 4), keepdim=True, unbiased=False).add(eps * eps).sqrt()
    return mean, std


def align_to_anchor(
    latents: torch.Tensor, anchor_mean: torch.Tensor, anchor_std: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Re-normalise latents to the anchor's per-channel mean and standard deviation.

    Args:
        latents: ``[B, C, t, H, W]``.
        anchor_mean: ``[B, C, 1, 1, 1]``.
        anchor_std: ``[B, C, 1, 1, 1]``.
        eps: Floor of the standard deviation.

    Returns:
        ``(x − μ_x)/σ_x · σ_anchor + μ_anchor`` ``[B, C, t, H, W]`` in ``latents.dtype``.
    """
    mean, std = channel_stats(latents, eps)
    out = (latents.float() - mean) / std * anchor_std + anchor_mean
    return out.to(latents.dtype)


def progressive_prefix_denoise(
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    window: int = 17,
    prefix_frames: int = 4,
    anchor_alignment: bool = True,
) -> torch.Tensor:
    """Denoise a long latent video window by window with clean prefixes and anchor alignment.

    Window ``i > 0`` holds the last ``prefix_frames`` frames of window ``i − 1`` (fully denoised, flow
    time 0, never updated) followed by its own frames taken from ``latents`` at ``sigmas[0]``. After
    every Euler step the first window's statistics are stored; later windows' new frames are aligned
    to them (:func:`align_to_anchor`). AnyExpress uses 4 prefix frames; the default keeps that count
    in latent frames (about a quarter of a 17-frame window).

    Args:
        latents: Initial latents at flow time ``sigmas[0]`` ``[B, C, T, H, W]`` (e.g. noise).
        sigmas: ``[S + 1]`` decreasing flow times.
        fn: ``fn(window_latents [B, C, t, H, W], frame_indices [t], frame_sigma [B, t]) -> velocity``
            with global ``frame_indices`` (for RoPE) and per-frame flow times (0 on the prefix).
        window: Latent frames per window, prefix included.
        prefix_frames: Clean frames carried over.
        anchor_alignment: Align windows after the first to the anchor's statistics.

    Returns:
        ``[B, C, T, H, W]`` latents at flow time ``sigmas[-1]``.
    """
    bsz, num_frames = latents.shape[0], latents.shape[2]
    steps = sigmas.numel() - 1
    out = latents.clone()
    anchor: list[tuple[torch.Tensor, torch.Tensor]] = []
    for w, frames in enumerate(prefix_windows(num_frames, window, prefix_frames)):
        idx = torch.arange(frames.start, frames.stop, device=latents.device)
        n_prefix = 0 if w == 0 else prefix_frames
        x = out[:, :, frames.start : frames.stop].clone()
        for i in range(steps):
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            frame_sigma = torch.full((bsz, idx.numel()), sigma, device=latents.device)
            frame_sigma[:, :n_prefix] = 0.0
            velocity = fn(x, idx, frame_sigma)
            new = euler_step(x[:, :, n_prefix:], velocity[:, :, n_prefix:], sigma, sigma_next)
            if w == 0:
                anchor.append(channel_stats(new))
            elif anchor_alignment:
                new = align_to_anchor(new, *anchor[i])
            x = torch.cat([x[:, :, :n_prefix], new], dim=2)
        out[:, :, frames.start + n_prefix : frames.stop] = x[:, :, n_prefix:]
    return out
