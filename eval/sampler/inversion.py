"""Inversion editing (RASA, "Training-free portrait video editing"): invert the source, re-denoise with new audio.

RASA edits a portrait video without training: DDIM inversion takes the source latents back to noise, then the
denoiser runs forward from that noise under the new condition while, during the first steps, attention features
recorded on the inversion replace the target's (its Unified Animation Control):

- **shape control** (Eq. 2, ``τ_s``): the source's self-attention queries (the layout);
- **speaking control** (Eq. 3, ``τ_a``): the source's visual queries and audio keys of the audio cross-attention,
  the target's audio values;
- **temporal control** (``τ_f``): the source's frame-wise queries and keys. In LTX's joint space-time
  self-attention that is the source's self-attention queries and keys together, so the attention map is the
  source's while the values are the target's.

For a flow model the inversion is the Euler sampler run backwards over the same flow times. Step ``i`` of the
sampler maps ``x_i`` to ``x_{i+1} = x_i − (t_i − t_{i+1}) v(x_i, t_i)``; inverting it means solving
``x_i = x_{i+1} + (t_i − t_{i+1}) v(x_i, t_i)``, which :func:`invert` does by fixed-point iteration from the
explicit guess ``x_{i+1} + (t_i − t_{i+1}) v(x_{i+1}, t_{i+1})``. Once the iteration has converged, the sampler
run on the source's own conditions at guidance 1 lands back on the source latents, and the features recorded
at step ``i`` are the ones the sampler computes at its step ``i``.

Only generated tokens (``M = 1``) are inverted; the others are clean conditions as in every mode, so a V2V mask
(``lip``, ``face``, ``head``) chooses what the edit may change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from eval.sampler.config import GuidanceConfig, InversionConfig
from eval.sampler.sampler import EulerSampler, SampleInputs
from trainer.model.sequence import patchify

# Where each control reads and writes, per transformer block: (submodule, projection).
SITES = {
    "query": ("attn1", "to_q"),
    "key": ("attn1", "to_k"),
    "audio_query": ("audio_attn", "to_q"),
    "audio_key": ("audio_attn", "to_k"),
}


def injected_sites(cfg: InversionConfig, step: int, num_steps: int, has_audio: bool) -> frozenset[str]:
    """The features the source gives the target at denoising step ``step`` (:data:`SITES` names).

    A control with share ``τ`` covers the first ``round(τ · num_steps)`` steps.
    """
    sites = set()
    if step < round(max(cfg.shape_steps, cfg.temporal_steps) * num_steps):
        sites.add("query")
    if step < round(cfg.temporal_steps * num_steps):
        sites.add("key")
    if has_audio and step < round(cfg.speaking_steps * num_steps):
        sites |= {"audio_query", "audio_key"}
    return frozenset(sites)


class AttentionFeatures:
    """Forward hooks on each block's attention projections that record them, or replace them by a recording.

    A recording is keyed by (denoising step, site, block). Which sites are live at a step comes from
    :meth:`at_step`; the audio sites are replaced only in passes with audio on (the sampler's
    ``guidance_pass``), so the audio-null pass of guidance stays null.

    Args:
        sampler: The sampler whose DiT is hooked (its ``guidance_pass`` tells the pass).
    """

    def __init__(self, sampler: EulerSampler):
        self.sampler = sampler
        self.blocks = list(sampler.dit.transformer.transformer_blocks)
        self.recording: dict[tuple[int, str, int], torch.Tensor] = {}
        self.mode: str | None = None  # "record" or "inject"
        self.step = 0
        self.sites: frozenset[str] = frozenset()

    def at_step(self, mode: str, step: int, sites: frozenset[str]) -> None:
        """Record (``mode="record"``) or replace (``"inject"``) ``sites`` during the DiT calls of ``step``."""
        self.mode, self.step, self.sites = mode, step, sites

    @contextmanager
    def hooked(self) -> Iterator[AttentionFeatures]:
        """Hooks installed on every block for the duration (removed after, even on error)."""
        handles = []
        for index, block in enumerate(self.blocks):
            for site, (owner, proj) in SITES.items():
                module = getattr(getattr(block, owner, None), proj, None)
                if module is not None:
                    handles.append(module.register_forward_hook(self._hook(site, index)))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            self.mode = None

    def _hook(self, site: str, index: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            if self.mode is None or site not in self.sites:
                return None
            key = (self.step, site, index)
            if self.mode == "record":
                # Held on the CPU: every block's queries and keys of 40 % of the steps would not fit beside a
                # large DiT on its accelerator (LTX-13B at 40 steps: tens of GB).
                self.recording[key] = output.detach().to("cpu", copy=True)
                return None
            if site.startswith("audio") and not self.sampler.guidance_pass[1]:
                return None  # the audio-null pass keeps its null audio
            source = self.recording[key]
            if source.shape != output.shape:
                raise ValueError(
                    f"invert_edit: block {index} {site} has shape {tuple(output.shape)} while editing but "
                    f"{tuple(source.shape)} on the inversion; source and target need the same tokens and references"
                )
            return source.to(output.device, output.dtype)

        return hook


def _check_single_pass(sampler: EulerSampler, inputs: SampleInputs) -> None:
    frames = inputs.grid[0]
    if 0 < sampler.cfg.block_size < frames:
        raise ValueError(
            f"invert_edit denoises the whole video in one pass, but it has {frames} latent frames and "
            f"sampler.block_size={sampler.cfg.block_size}; set sampler.block_size=0 or >= {frames}"
        )


@torch.no_grad()
def invert(sampler: EulerSampler, inputs: SampleInputs, features: AttentionFeatures | None = None) -> torch.Tensor:
    """The noise from which ``sampler`` (at guidance 1) denoises back to ``inputs.latents``.

    Args:
        sampler: The sampler to invert (its flow times; the inversion runs without guidance and TeaCache).
        inputs: The source and its conditions.
        features: Recorder of the attention features of the steps it is told to record; ``None``: none.

    Returns:
        Tokens at ``t = 1`` ``[B, T·H·W, C]``: generated tokens inverted, the others the clean source.
    """
    _check_single_pass(sampler, inputs)
    inv_cfg = sampler.cfg.inversion
    plain = EulerSampler(
        sampler.dit, dataclasses.replace(sampler.cfg, guidance=GuidanceConfig(1.0, 1.0), teacache_threshold=0.0)
    )
    plain.times = sampler.times
    x0 = patchify(inputs.latents)
    m = inputs.mask.flatten(1).to(x0.device)[..., None] > 0
    has_audio = inputs.windows is not None
    x = x0
    for i in reversed(range(sampler.cfg.num_steps)):
        t, t_next = float(sampler.times[i]), float(sampler.times[i + 1])
        if features is not None:
            features.at_step("record", i, injected_sites(inv_cfg, i, sampler.cfg.num_steps, has_audio))
        guess = torch.where(m, x + (t - t_next) * plain.full_velocity(inputs, x, t_next, i), x0)
        for _ in range(inv_cfg.fixed_point_iters):
            guess = torch.where(m, x + (t - t_next) * plain.full_velocity(inputs, guess, t, i), x0)
        x = guess
    return x


@torch.no_grad()
def invert_edit(sampler: EulerSampler, source: SampleInputs, target: SampleInputs) -> torch.Tensor:
    """RASA-style editing: invert ``source``, then denoise under ``target``'s conditions with its controls.

    Args:
        sampler: The sampler (``cfg.inversion`` holds the controls' shares and the fixed-point iterations).
        source: The source video and the conditions it was made with (its own audio).
        target: The same latents, mask and references with the new conditions (the new audio).

    Returns:
        Clean latents ``[B, C, T, H, W]``; tokens outside ``M`` equal the source's exactly.

    Raises:
        ValueError: Source and target differ in latents or mask, the video needs TAPSF blocks, TeaCache is on (it
            skips the blocks whose features are replaced), or ``fixed_point_iters`` < 1.
    """
    if sampler.teacache is not None:
        raise ValueError("invert_edit replaces attention features TeaCache would skip: set teacache_threshold=0")
    if sampler.cfg.inversion.fixed_point_iters < 1:
        raise ValueError("invert_edit needs sampler.inversion.fixed_point_iters >= 1 (it records the features)")
    if source.latents.shape != target.latents.shape or not torch.equal(source.mask, target.mask):
        raise ValueError("invert_edit: source and target must share the latent grid and the mask M")
    if not torch.equal(source.latents, target.latents):
        raise ValueError("invert_edit: source and target must share the source latents (only conditions change)")
    if (source.windows is None) != (target.windows is None):
        raise ValueError("invert_edit: source and target must both have audio windows, or neither")
    features = AttentionFeatures(sampler)
    num_steps = sampler.cfg.num_steps
    has_audio = target.windows is not None

    def velocity(inputs: SampleInputs, x: torch.Tensor, t: float, step: int) -> torch.Tensor:
        features.at_step("inject", step, injected_sites(sampler.cfg.inversion, step, num_steps, has_audio))
        return sampler.full_velocity(inputs, x, t, step)

    with features.hooked():
        noise = invert(sampler, source, features)
        return sampler.sample(target, noise=noise, velocity=velocity)
