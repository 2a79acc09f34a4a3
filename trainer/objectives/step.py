"""One training step's DiT inputs: Table 1's conditions, KNN noise, the mask ``M``, flow times and references.

Pure functions of the plain model (:class:`~trainer.model.talking_head.TalkingHeadModel`), the config and a
batch; the training module, the held-out loss and the sampler's parity tests all build their inputs here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from trainer.config.schema import TrainConfig
from trainer.model.dit import AudioInputs
from trainer.model.dit_inputs import (
    assemble_dit_inputs,
    batch_audio_windows,
    frame_references,
    identity_references,
)
from trainer.model.masks import lower_face_token_mask
from trainer.model.sequence import patchify
from trainer.model.talking_head import TalkingHeadModel
from trainer.objectives.conditions import ConditionFlags, sample_conditions
from trainer.objectives.flow_matching import noise_mask, noise_tokens, velocity_target
from trainer.objectives.immiscible import knn_noise
from trainer.objectives.timesteps import sample_timesteps


@dataclass
class StepInputs:
    """Everything the DiT reads in one training step, plus what the loss needs.

    Attributes:
        tokens: DiT input ``[B, N_ref + N, C]``.
        timestep: Per-token flow time ``[B, N_ref + N]``.
        coords: RoPE coordinates ``[B, 3, N_ref + N]``.
        audio: Audio inputs (``None`` for a DiT without audio adapter).
        text: Text embeddings ``[B, L, C_text]``.
        text_mask: ``[B, L]``.
        target: ``ε − x0`` of the video tokens ``[B, N, C]``.
        mask: ``M`` of the video tokens ``[B, N]``.
        num_ref: Reference tokens at the head of the sequence.
        flags: Condition flags of the step.
        grid: Latent grid ``(T, H, W)`` of the video tokens (``N = T·H·W``; with frame references the block,
            one or two latent frames fewer than the clip).
        flow_time: Flow time of each sample ``[B]`` (the masked tokens' timestep).
    """

    tokens: torch.Tensor
    timestep: torch.Tensor
    coords: torch.Tensor
    audio: AudioInputs | None
    text: torch.Tensor
    text_mask: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    num_ref: int
    flags: ConditionFlags
    grid: tuple[int, int, int]
    flow_time: torch.Tensor


def frame_reference_block(sides: str, frames: int) -> tuple[int, int, list[int]]:
    """The block a batch with full-frame references generates, and the clip frames that stand as its references.

    At inference a fully synthetic block (no V2V or first-frame condition) gets the closest clean latent frame
    before and/or after it as full-frame references (Eq. 7; :meth:`eval.sampler.sampler.EulerSampler.
    block_frame_references`). Training makes that situation from one clip: its first latent frame (``past``), its
    last (``future``) or both are taken out of the generated tokens and given clean as references; the rest of
    the clip is the block, at its own (global) latent indices.

    Args:
        sides: ``"none"``, ``"past"``, ``"future"`` or ``"both"``.
        frames: Latent frames ``T`` of the clip.

    Returns:
        ``(first, last, sources)``: the block's first and last latent frame (inclusive) and the reference
        frames' latent indices (``[]``: no references, the whole clip; also when the clip is too short to keep
        a frame in the block).
    """
    past, future = sides in ("past", "both"), sides in ("future", "both")
    first, last = int(past), frames - 1 - int(future)
    if sides == "none" or first > last:
        return 0, frames - 1, []
    return first, last, ([0] if past else []) + ([frames - 1] if future else [])


def step_inputs(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    batch: dict,
    x0: torch.Tensor,
    ref_lat: torch.Tensor,
    gen: torch.Generator,
    flags: ConditionFlags | None = None,
    t: torch.Tensor | None = None,
) -> StepInputs:
    """DiT inputs of encoded latents: conditions, noise, masks and flow times.

    With full-frame references (``flags.frame_refs``, drawn with ``stage.p_frame_ref``) the step generates a
    fully synthetic block of the clip, V2V and first-frame conditions off, with the clip's edge latent frames
    as clean references at their Eq. 7 indices (:func:`frame_reference_block`), built by the function the
    sampler uses; references are never in the loss.

    Args:
        model: The model (its audio adapter decides whether audio windows are built; its text encoder
            embeds the captions).
        cfg: The training config (stage probabilities, objective, mask and audio settings).
        batch: The loader batch (boxes, audio features, captions, fps).
        x0: Normalised clip latents ``[B, C, T, H, W]``.
        ref_lat: Normalised reference latents ``[B, C, R, H, W]``.
        gen: RNG of the random draws.
        flags: Fixed conditions instead of Table 1's random draw (validation).
        t: Fixed flow time per sample ``[B]`` instead of the logit-normal draw (validation).
    """
    obj, stage, data = cfg.objective, cfg.stage, cfg.data
    dev = x0.device
    bsz, _, frames_lat, grid_h, grid_w = x0.shape
    fps = batch["fps"].to(dev)

    if flags is None:
        flags = sample_conditions(
            bsz,
            stage.p_audio,
            stage.p_ff,
            stage.p_v2v,
            stage.p_id,
            gen,
            dev,
            p_frame_ref=stage.p_frame_ref,
            p_ref_drop=stage.p_ref_drop,
            ref_follows_audio=stage.ref_follows_audio,
        )
    first, last, sources = frame_reference_block(flags.frame_refs, frames_lat)
    if sources:  # a fully synthetic block, as the sampler gives frame references to
        off = torch.zeros(bsz, dtype=torch.bool, device=dev)
        flags = dataclasses.replace(flags, v2v=off, first_frame=off)
    elif flags.frame_refs != "none":  # the clip is too short to keep a frame in the block
        flags = dataclasses.replace(flags, frame_refs="none")
    face = lower_face_token_mask(
        batch["lower_face_boxes"].to(dev), grid_h, grid_w, data.mask, data.mask_padding, data.mask_alpha
    )[:, first : last + 1]
    m = noise_mask(face, flags.v2v, flags.first_frame).flatten(1)  # [B, N]

    clip = x0
    x0 = clip[:, :, first : last + 1]
    frames_lat = last - first + 1
    x0_tok = patchify(x0)
    noise, _ = knn_noise(x0_tok, m, obj.knn_candidates, gen)
    if t is None:
        t = sample_timesteps(bsz, obj.timestep_loc, obj.timestep_scale, gen, dev)
    x_t, t_tok = noise_tokens(x0_tok, noise, t, m)
    references = []
    if flags.identity:
        refs = batch["ref_lower_face_boxes"].to(dev)
        if flags.reference is not None:  # a dropped reference is zeroed in latent space (SayAnything)
            ref_lat = ref_lat * flags.reference[:, None, None, None, None].to(ref_lat.dtype)
        references.append(identity_references(ref_lat, refs, grid_h, grid_w, fps))
    if sources:
        index = torch.tensor(sources, device=dev)
        references.append(frame_references(clip[:, :, index], index, first, last, fps))
    windows = valid = None
    if model.adapter_config is not None:
        windows, valid = batch_audio_windows(batch, cfg.audio.window, cfg.audio.feature_rate, dev)
        windows = windows * flags.audio[:, None, None, None, None].to(windows.dtype)
    inputs = assemble_dit_inputs(
        x_t, t_tok, m, (frames_lat, grid_h, grid_w), fps, windows, valid, references, frame_offset=first
    )
    text, text_mask = model.text_encoder(batch["captions"])
    return StepInputs(
        tokens=inputs.tokens,
        timestep=inputs.timestep,
        coords=inputs.coords,
        audio=inputs.audio,
        text=text,
        text_mask=text_mask,
        target=velocity_target(x0_tok, noise),
        mask=m,
        num_ref=inputs.num_ref,
        flags=flags,
        grid=(frames_lat, grid_h, grid_w),
        flow_time=t,
    )


def prepare_step(model: TalkingHeadModel, cfg: TrainConfig, batch: dict, gen: torch.Generator) -> StepInputs:
    """A batch's DiT inputs with its latents, conditions, noise and masks all drawn from ``gen``."""
    x0, ref_lat = model.encode_latents(batch, gen)
    return step_inputs(model, cfg, batch, x0, ref_lat, gen)
