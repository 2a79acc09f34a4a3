"""Sampler inputs from a loader batch, built with the model's own encoders and its training config's settings."""

from __future__ import annotations

import numpy as np
import torch

from eval.sampler.edit_audio import edited_track, source_video_frames
from eval.sampler.editing import EditedSequence, apply_edits
from eval.sampler.modes import mode_mask
from eval.sampler.sampler import SampleInputs
from trainer.config.schema import TrainConfig
from trainer.model.dit_inputs import batch_audio_windows, identity_references
from trainer.model.masks import lower_face_token_mask
from trainer.model.talking_head import TalkingHeadModel


def _text_and_references(
    model: TalkingHeadModel,
    batch: dict,
    ref_latents: torch.Tensor | None,
    identity_refs: bool,
    grid: tuple[int, int],
    fps,
) -> dict:
    """Caption and empty-caption embeddings and the identity reference tokens of a batch."""
    text, text_mask = model.text_encoder(batch["captions"])
    null_text, null_mask = model.text_encoder([""] * len(batch["captions"]))
    references = []
    if identity_refs and ref_latents is not None:
        boxes = batch["ref_lower_face_boxes"].to(ref_latents.device)
        references.append(identity_references(ref_latents, boxes, *grid, fps))
    return {
        "text": text,
        "text_mask": text_mask,
        "null_text": null_text,
        "null_text_mask": null_mask,
        "references": references,
    }


@torch.no_grad()
def sample_inputs_from_batch(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    batch: dict,
    latents: torch.Tensor,
    ref_latents: torch.Tensor | None,
    mode: str = "v2v",
    v2v_mask: str = "lip",
    identity_refs: bool = True,
    head_scale: float = 1.6,
) -> SampleInputs:
    """Conditions of one sampling run over a batch of the training stream's layout.

    Args:
        model: The model (its text encoder, and whether its DiT has an audio adapter).
        cfg: The training config it was built from (masks, audio windows, VAE factors).
        batch: A loader batch (``lower_face_boxes``, ``face_boxes``, ``whisper``…, ``captions``, ``fps``).
        latents: Normalised clip latents ``[B, C, T, H, W]`` (``TalkingHeadModel.encode_latents``).
        ref_latents: Normalised identity reference latents ``[B, C, R, H, W]`` or ``None``.
        mode: ``t2v``, ``i2v`` or ``v2v``.
        v2v_mask: ``lip``, ``face`` or ``head``.
        identity_refs: Prepend face reference tokens (paper §3.4) when ``ref_latents`` is given.
        head_scale: Face-box growth of the ``head`` mask.

    Returns:
        The inputs of :meth:`eval.sampler.sampler.EulerSampler.sample`.
    """
    dev = latents.device
    bsz, _, frames, grid_h, grid_w = latents.shape
    fps = batch["fps"].to(dev)
    face_boxes = batch.get("face_boxes")
    mask = mode_mask(
        mode,
        (frames, grid_h, grid_w),
        bsz,
        v2v_mask,
        lower_face_boxes=batch["lower_face_boxes"],
        face_boxes=face_boxes,
        mask_kind=cfg.data.mask,
        mask_padding=cfg.data.mask_padding,
        mask_alpha=cfg.data.mask_alpha,
        head_scale=head_scale,
        spatial_compression=cfg.model.vae.spatial_compression,
        device=dev,
    )
    windows = valid = None
    if model.adapter_config is not None:  # a base DiT (no audio adapter) samples without audio
        windows, valid = batch_audio_windows(batch, cfg.audio.window, cfg.audio.feature_rate, dev)
    common = _text_and_references(model, batch, ref_latents, identity_refs, (grid_h, grid_w), fps)
    return SampleInputs(latents=latents, mask=mask, fps=fps, windows=windows, window_valid=valid, **common)


@torch.no_grad()
def edited_sample_inputs(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    batch: dict,
    latents: torch.Tensor,
    ref_latents: torch.Tensor | None,
    edits: list,
    identity_refs: bool = True,
) -> tuple[SampleInputs, EditedSequence, list[int | None]]:
    """Conditions of sampling an edited clip (visual dialog editing, paper §3.3).

    The kept frames are face-masked with the trainer's lip mask, new and re-rendered frames are generated,
    and the driving audio features are the source's re-assembled along the edit (silent where frames were
    inserted, :mod:`eval.sampler.edit_audio`).

    Args:
        model: The model (its text encoder).
        cfg: The training config it was built from (mask, audio windows, VAE factors).
        batch: A one-clip batch (boxes, captions, fps, reference boxes).
        latents: Normalised source latents ``[B, C, T, H, W]``.
        ref_latents: Identity reference latents ``[B, C, R, H, W]`` or ``None``.
        edits: :class:`eval.sampler.edit_plan.Edit` list on the source timeline (seconds).
        identity_refs: Prepend face reference tokens.

    Returns:
        ``(inputs, edited, frames)``: the sampler inputs over the edited sequence, the edit result and the
        source video frame of every output frame (``None``: inserted), for re-assembling the waveform.
    """
    dev = latents.device
    bsz, _, frames, grid_h, grid_w = latents.shape
    fps = batch["fps"].to(dev)
    face = lower_face_token_mask(
        batch["lower_face_boxes"].to(dev), grid_h, grid_w, cfg.data.mask, cfg.data.mask_padding, cfg.data.mask_alpha
    )
    edited = apply_edits(latents, edits, float(fps[0]), face_mask=face)
    frames_map = source_video_frames(edited.source_index, cfg.model.vae.temporal_compression)
    source = batch["whisper"].cpu().numpy()
    whisper = torch.from_numpy(
        np.stack([edited_track(w, frames_map, cfg.audio.feature_rate, float(fps[0])) for w in source])
    )
    edited_batch = {
        "whisper": whisper,
        "whisper_len": torch.full((bsz,), whisper.shape[1], dtype=torch.long),
        "fps": fps,
        "num_frames": edited.video_frames,
        "frame_start": torch.zeros(bsz, dtype=torch.long),
    }
    windows, valid = batch_audio_windows(edited_batch, cfg.audio.window, cfg.audio.feature_rate, dev)
    common = _text_and_references(model, batch, ref_latents, identity_refs, (grid_h, grid_w), fps)
    mask = edited.mask_grid().to(torch.float32)
    inputs = SampleInputs(latents=edited.latents, mask=mask, fps=fps, windows=windows, window_valid=valid, **common)
    return inputs, edited, frames_map
