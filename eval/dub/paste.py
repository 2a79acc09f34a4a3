"""Pass 3 of a dub: the generated crops pasted into the source's full-resolution frames and encoded.

The latents are decoded tile by tile; each generated crop goes into its frame through a feathered mask around
the mouth region, within the tokens the model generated (every pixel outside it is the decoder's own), and the
frames are encoded as they come with the speech muxed as AAC (:class:`eval.dub.writer.DubWriter`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from eval.dub.background import Behind, Prefetch
from eval.dub.geometry import paste_crop
from eval.dub.plan import DubPlan
from eval.dub.timeline import Timeline
from eval.dub.video import FrameReader, writable_copy
from eval.dub.writer import DubWriter
from eval.sampler.modes import head_boxes
from eval.sampler.paste import frame_mask
from eval.sampler.vae_tiling import iter_tiled_decode
from trainer.model.masks import latent_frame_groups
from trainer.model.talking_head import TalkingHeadModel
from trainer.model.vae import denormalize_latents

# Full-resolution frames queued between the paste pass's threads (3 MB each at 1080x1920).
_QUEUED_FRAMES = 4


def _box_mask(box: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """A hard ``[h, w]`` float mask of ``box`` (crop pixels) grown by ``margin`` of its size on every side."""
    x0, y0, x1, y1 = (float(v) for v in box)
    gx, gy = margin * (x1 - x0), margin * (y1 - y0)
    out = np.zeros(size, np.float32)
    c0, r0 = max(0, int(np.floor(x0 - gx))), max(0, int(np.floor(y0 - gy)))
    c1, r1 = min(size[1], int(np.ceil(x1 + gx))), min(size[0], int(np.ceil(y1 + gy)))
    out[r0:r1, c0:c1] = 1.0
    return out


def paste_mask(box: np.ndarray, token_region: np.ndarray, size: tuple[int, int], margin: float, sigma: float):
    """Blend weights of one frame: the mouth-region box (grown, feathered) within the generated tokens' mask.

    Args:
        box: The mode's box in crop pixels (lower face, face or head) ``[4]``.
        token_region: ``[h, w]`` in [0, 1]: the feathered pixels of the tokens the model generated in this
            latent frame (:func:`eval.sampler.paste.frame_mask`), so nothing is taken from a clean token's
            re-rendering beyond the feathered edge.
        size: Crop ``(h, w)``.
        margin: Growth of the box.
        sigma: Gaussian softness in crop pixels.

    Returns:
        ``[h, w]`` float32 in [0, 1].
    """
    hard = _box_mask(box, size, margin)
    soft = cv2.GaussianBlur(hard, (0, 0), sigma) if sigma > 0 else hard
    return soft * token_region


def _generated_frames(model: TalkingHeadModel, latents: torch.Tensor) -> Iterator[np.ndarray]:
    """Decoded crops ``[h, w, 3]`` uint8 one by one, the VAE decoding one temporal tile at a time."""
    vae = model.vae
    raw = denormalize_latents(latents.float(), vae).to(vae.dtype)
    temb = None
    if getattr(vae.config, "timestep_conditioning", False):
        temb = torch.zeros(raw.shape[0], device=raw.device, dtype=raw.dtype)  # clean latents decode at t = 0
    for chunk in iter_tiled_decode(vae, raw, temb):
        frames = ((chunk.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 3, 0).cpu()
        yield from frames.numpy()


def _output_frames(reader: FrameReader, timeline: Timeline) -> Iterator[tuple[int, av.VideoFrame, tuple]]:
    """``(source frame, writable copy, its Y/U/V views)`` of every output frame (:func:`writable_copy`)."""
    for j in range(timeline.num_output):
        src = int(timeline.order[j])
        frame, planes = writable_copy(reader.frame(src))
        yield src, frame, planes


@torch.no_grad()
def paste_and_write(cfg, model, reader: FrameReader, plan: DubPlan, generated, mask, path: Path) -> None:
    """Pass 3: every output frame is its source frame with the generated mouth region pasted in.

    Three threads share the work: one decodes the source frames ahead (and copies each into a frame to
    write), this one decodes the latents and pastes, one encodes and muxes behind; the queues between them
    hold a few full-resolution frames.
    """
    info, timeline, size = plan.info, plan.timeline, plan.size
    sigma = cfg.feather * size[0]
    s = model.spatial_compression
    token_mask = mask[0].float().cpu().numpy()  # [T, gh, gw]
    groups = latent_frame_groups(timeline.num_model_frames, model.temporal_compression)
    latent_of = np.zeros(timeline.num_model_frames, int)
    for t, g in enumerate(groups):
        latent_of[g.start : g.stop] = t
    region_of: dict[int, np.ndarray] = {}  # the current latent frame's pixel mask only: memory stays flat
    key = "lower" if cfg.mask == "lip" else "face"
    boxes = plan.crop_boxes[key]
    if cfg.mask == "head":
        boxes = head_boxes(torch.from_numpy(boxes), cfg.head_scale, size[0], size[1]).numpy()
    writer = DubWriter(path, info, cfg.audio, timeline.audio_s, cfg.crf, cfg.preset, cfg.x264_params)
    sources = Prefetch(_output_frames(reader, timeline), depth=_QUEUED_FRAMES, name="dub-source")
    encoder = Behind(writer.add, depth=_QUEUED_FRAMES, name="dub-writer")
    try:
        crops = _generated_frames(model, generated)
        for j, (src, frame, planes) in enumerate(sources):
            crop = next(crops)
            t = int(latent_of[j])
            if t not in region_of:
                region_of = {t: frame_mask(token_mask[t], s, sigma)}
            weight = paste_mask(boxes[j], region_of[t], size, cfg.paste_margin, sigma)
            paste_crop(planes, plan.windows[src], info.quarter_turns, crop, weight, info.colorspace, info.color_range)
            encoder.put(frame)
        encoder.join()
        writer.finish()
    except BaseException:
        sources.close()
        encoder.abort()
        writer.abort()
        raise
    finally:
        sources.close()
