"""Condition dropout per stage (EditYourself Table 1; SayAnything's coupled reference masking as an option).

Each probability is the chance that a condition is ON (``p_ref_drop``: that the references are OFF). Audio,
first-frame and V2V conditions are drawn per sample. Identity references and full-frame references are drawn
once per batch: they add tokens to the sequence and every sample of a batch must have the same length; a
sample's identity references can still be dropped by zeroing them (SayAnything).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ConditionFlags:
    """Which conditions are on for each sample of a batch.

    Attributes:
        audio: ``[B]`` bool; off means the audio features are replaced by zeros (the null condition).
        first_frame: ``[B]`` bool; on keeps latent frame 0 clean (image-to-video), off is text-to-video.
        v2v: ``[B]`` bool; on noises only the lower-face mask, off sets ``M = 1``.
        identity: Whether identity reference tokens are prepended (whole batch).
        reference: ``[B]`` bool; off zeroes the sample's identity reference latents (SayAnything's masking of the
            fused reference features), ``None``: on for every sample.
        frame_refs: Full-frame reference tokens of the whole batch (Eq. 7): ``"none"``, or which clean
            neighbours of a fully synthetic block the clip's edge latent frames stand for: ``"past"`` (its first
            latent frame), ``"future"`` (its last) or ``"both"`` (:func:`trainer.objectives.step.step_inputs`).
    """

    audio: torch.Tensor
    first_frame: torch.Tensor
    v2v: torch.Tensor
    identity: bool
    frame_refs: str = "none"
    reference: torch.Tensor | None = None


# What a batch with frame references takes from its clip's edges, drawn uniformly.
FRAME_REF_SIDES = ("past", "future", "both")


def sample_conditions(
    batch_size: int,
    p_audio: float,
    p_ff: float,
    p_v2v: float,
    p_id: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    p_frame_ref: float = 0.0,
    p_ref_drop: float = 0.0,
    ref_follows_audio: bool = False,
) -> ConditionFlags:
    """Draw condition flags.

    Args:
        batch_size: Samples ``B``.
        p_audio: Probability the audio condition is on.
        p_ff: Probability the first-frame condition is on.
        p_v2v: Probability the V2V (masked inpainting) condition is on.
        p_id: Probability the batch gets identity reference tokens.
        generator: RNG on ``device``.
        device: Device of the flags.
        p_frame_ref: Probability the batch trains a fully synthetic block with full-frame references; its side
            is drawn uniformly from :data:`FRAME_REF_SIDES`. At 0 nothing more is drawn, so runs without
            frame references draw exactly what they drew before the option existed.
        p_ref_drop: Per-sample probability that the identity references are zeroed (SayAnything: 0.15).
        ref_follows_audio: A sample whose audio is off has its references off too (SayAnything's coupling, so
            that the model also learns generation from the masked video alone). Neither option draws anything
            when off.

    Returns:
        The flags.
    """
    u = torch.rand(3, batch_size, generator=generator, device=device)
    u_id = torch.rand(1, generator=generator, device=device)
    frame_refs = "none"
    if p_frame_ref > 0:
        u_fr = torch.rand(2, generator=generator, device=device)
        if u_fr[0].item() < p_frame_ref:
            frame_refs = FRAME_REF_SIDES[min(int(u_fr[1].item() * len(FRAME_REF_SIDES)), len(FRAME_REF_SIDES) - 1)]
    audio = u[0] < p_audio
    reference = None
    if p_ref_drop > 0 or ref_follows_audio:
        reference = torch.ones(batch_size, dtype=torch.bool, device=device)
        if p_ref_drop > 0:
            reference = torch.rand(batch_size, generator=generator, device=device) >= p_ref_drop
        if ref_follows_audio:
            reference = reference & audio
    return ConditionFlags(
        audio=audio,
        first_frame=u[1] < p_ff,
        v2v=u[2] < p_v2v,
        identity=bool(u_id.item() < p_id),
        frame_refs=frame_refs,
        reference=reference,
    )
