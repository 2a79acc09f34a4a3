"""The sampler's inputs of a dub: the crops' latents (pass 2), the V2V mask and the identity references.

Pass 2 reads the video a second time, cuts every frame the timeline shows to the model resolution and
streams the crops into the VAE one temporal tile at a time; the reference crops are encoded frame by frame.
The V2V mask comes from the plan's boxes in crop coordinates (``cfg.mask``: lip, face or head).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from eval.dub.background import Prefetch
from eval.dub.config import DubConfig
from eval.dub.geometry import cut_crop
from eval.dub.plan import DubPlan
from eval.dub.video import FrameReader, yuv_planes
from eval.sampler.modes import mode_mask
from eval.sampler.sampler import SampleInputs
from eval.sampler.vae_tiling import SlidingFrames, tiled_encode_frames
from trainer.model.dit_inputs import identity_references
from trainer.model.talking_head import TalkingHeadModel
from trainer.model.vae import normalize_latents


def _crops(reader: FrameReader, plan: DubPlan, refs: dict[int, np.ndarray]) -> Iterator[torch.Tensor]:
    """Model-resolution crops ``[3, h, w]`` in [−1, 1] of the timeline's frames; reference crops land in ``refs``."""
    info = plan.info
    for src in plan.timeline.order:
        planes = yuv_planes(reader.frame(int(src)), copy=False)  # read only: the crop is cut from the views
        crop = cut_crop(planes, plan.windows[src], info.quarter_turns, plan.size, info.colorspace, info.color_range)
        if int(src) in plan.references and int(src) not in refs:
            refs[int(src)] = crop
        # Scaled in numpy: torch spreads even a 128x128 elementwise op over its thread pool, which costs
        # milliseconds per crop on a busy machine.
        yield torch.from_numpy(crop.transpose(2, 0, 1).astype(np.float32) / np.float32(127.5) - np.float32(1.0))


@torch.no_grad()
def encode_crops(
    model: TalkingHeadModel, reader: FrameReader, plan: DubPlan, ref_crops: dict[int, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pass 2: normalised latents of the crops ``[1, C, T, h, w]`` and of the reference crops ``[1, C, R, h, w]``.

    The crops stream into the VAE one temporal tile at a time (posterior means: inference is deterministic).
    ``ref_crops`` is complete once this returns (the crops' thread has stopped).
    """
    vae, dev = model.vae, model.device
    # Decoding and cutting the next crops (a background thread) overlaps the VAE encoding the current tile.
    with Prefetch(_crops(reader, plan, ref_crops), depth=16, name="dub-crops") as crops:
        window = SlidingFrames(crops, lambda w: w.permute(1, 0, 2, 3)[None].to(dev, vae.dtype))
        moments = tiled_encode_frames(vae, window, plan.timeline.num_model_frames)
    mean = moments.float().chunk(2, dim=1)[0]
    latents = normalize_latents(mean, vae)
    if not plan.references:
        return latents, None
    refs = np.stack([ref_crops[i] for i in plan.references])  # [R, h, w, 3]
    video = torch.from_numpy(refs).permute(0, 3, 1, 2)[:, :, None].float().div(127.5).sub(1.0)  # [R, 3, 1, h, w]
    ref_mean = vae.encoder(video.to(dev, vae.dtype)).float().chunk(2, dim=1)[0]  # each frame alone: one latent
    return latents, normalize_latents(ref_mean, vae).permute(2, 1, 0, 3, 4)  # [1, C, R, h, w]


def sample_inputs(
    cfg: DubConfig, model: TalkingHeadModel, plan: DubPlan, settings: dict, latents, ref_latents, conditions: dict
) -> SampleInputs:
    """The sampler's inputs: the crops' latents, the V2V mask of ``cfg.mask``, identity references, audio, text.

    Args:
        cfg: Options.
        model: The inference model.
        plan: Frames, windows and boxes.
        settings: The training run's settings (mask rule).
        latents: ``[1, C, T, h, w]``.
        ref_latents: ``[1, C, R, h, w]`` or ``None``.
        conditions: ``fps`` ``[1]``, ``windows``, ``window_valid``, ``text``, ``text_mask``, ``null_text``,
            ``null_text_mask`` (:class:`eval.sampler.sampler.SampleInputs` fields).
    """
    dev = model.device
    _, _, frames, grid_h, grid_w = latents.shape
    mask = mode_mask(
        "v2v",
        (frames, grid_h, grid_w),
        1,
        cfg.mask,
        lower_face_boxes=torch.from_numpy(plan.crop_boxes["lower"]).float()[None],
        face_boxes=torch.from_numpy(plan.crop_boxes["face"]).float()[None],
        mask_kind=str(settings["mask"]),
        mask_padding=float(settings["mask_padding"]),
        mask_alpha=float(settings["mask_alpha"]),
        head_scale=cfg.head_scale,
        spatial_compression=model.spatial_compression,
        device=dev,
    )
    references = []
    if ref_latents is not None:
        boxes = np.stack([plan.windows[s].to_crop(plan.lower[s], plan.size) for s in plan.references])
        boxes_t = torch.from_numpy(boxes).float()[None].to(dev)
        references.append(identity_references(ref_latents, boxes_t, grid_h, grid_w, conditions["fps"]))
    return SampleInputs(latents=latents, mask=mask, references=references, **conditions)
