"""Visual dialog editing on latent sequences (EditYourself §3.3).

Transcript edits (add, remove, re-render, retime spoken content) become operations on the latent frame
sequence ``[B, C, T, H, W]`` of the encoded source video. The result, :class:`EditedSequence`, carries
the edited latents, where every latent frame came from, the per-token inpainting mask ``M``
(1 = noised and generated, the convention of :mod:`trainer.objectives.flow_matching`) and RoPE
coordinates recomputed on the edited sequence; the sampler denoises it like any V2V clip.

Reading of the paper, per operation
-----------------------------------
* **Addition** — "Frame addition is implemented by inserting fully noised latent frames at the
  corresponding locations"; "newly inserted frames are fully unmasked (M = 1)". New frames get
  ``M = 1`` on every token, ``source_index = −1`` and zero placeholder latents (at flow time 1 Eq. 5 gives
  pure noise whatever ``x0`` is). No extra frames are re-noised: the paper asks new content to adhere to
  the clean boundary frames, which stay as context.
* **Removal** — "frame removal deletes existing latent frames", and "we apply additional noise to latent
  frames adjacent to removed segments, allowing the diffusion process to smoothly regenerate motion";
  Fig. 7: "noise adjacent latents to re-render a smooth transition". We read "additional noise" as a
  re-render (``M = 1``) of ``context`` latent frames (default 1) on each side of the cut over the **full
  frame** by default: a jump cut is a discontinuity of head pose, body and background, which the face
  region alone cannot bridge (kept frames already have ``M = 1`` on the lower face, so a face-only
  re-noise would change nothing). ``Edit.region`` narrows it to a token box. The paper gives no partial
  noise strength, so these frames start from noise like every ``M = 1`` token; they keep their source
  latents (``source_index ≥ 0``) for a sampler that wants to start them from a partly noised state. When
  new frames border the cut (a word replaced by another), the neighbours are taken outside the run of new
  frames, so both clean boundaries of the replaced segment are re-rendered.
* **Re-render** — "setting the spatial mask M = 1 at arbitrary regions … so that only those regions can be
  noised and regenerated while the remainder of the video remains unchanged": ``M = 1`` over a token box
  (``Edit.region``, end-exclusive ``(row0, col0, row1, col1)``; pixel boxes go through
  :func:`trainer.model.masks.box_to_token_box`) or the full frame (``region=None``) on the span's frames,
  united with their face mask (they are still lip-synced). The sequence length does not change.
* **Retime** — "implemented via evenly-distributed additions/removals" over the whole span. A span of
  ``n`` latent frames becomes ``m`` frames (``m = round_half_up(n·factor)``, or ``n`` plus the latent
  frames of ``duration_s − (end_s − start_s)``). Lengthening inserts ``m − n`` new frames at the
  Bresenham-spaced output positions ``⌊(j + ½)·m/(m − n)⌋`` of the retimed span; shortening deletes the
  source frames ``⌊(j + ½)·n/(n − m)⌋`` of the span, each deletion being a removal with its neighbour
  re-render (``Edit.context`` frames, 1 by default).
* **Kept frames** — "existing frames retain face-region masking during lip-sync generation": ``M = 1``
  on the lower-face token box (:func:`trainer.model.masks.face_token_mask`), 0 elsewhere. The combination
  goes through :func:`trainer.objectives.flow_matching.noise_mask` with V2V on.
* **RoPE** — "temporal rotary positional embeddings (RoPE) are computed on the edited latent sequence":
  the edited frames are indexed ``0 … T'−1`` contiguously, so their coordinates are exactly
  :func:`trainer.model.sequence.video_coords` of a clip of ``T'`` latent frames.

Times are resolved by :mod:`eval.sampler.edit_timeline`; edit lists are checked and planned by
:mod:`eval.sampler.edit_plan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from eval.sampler.edit_plan import (
    Edit,
    EditError,
    EditPlan,
    LatentEdit,
    TokenBox,
    check_region,
    plan_edits,
    resolve_edit,
)
from eval.sampler.edit_timeline import TEMPORAL_COMPRESSION, latent_to_video_frames
from trainer.model.masks import face_token_mask, token_box_mask
from trainer.model.sequence import grid_coords, patchify, video_token_grid
from trainer.objectives.flow_matching import noise_mask, noise_tokens

# --------------------------------------------------------------------------------------------------------
# Edited latent sequence


@dataclass
class EditedSequence:
    """An edited latent clip ready for masked denoising.

    Attributes:
        latents: ``[B, C, T', H, W]``; kept frames are the source latents, new frames are zeros (they are
            fully masked, and Eq. 5 at flow time 1 makes them pure noise).
        source_index: ``[T']`` int64, source latent frame per edited frame, −1 for new frames.
        noise_frames: ``[T']`` bool, frames with ``M = 1`` on every token of every sample (new frames,
            full-frame re-renders and cut neighbours): they start as pure noise.
        mask: ``M`` per token ``[B, T'·H·W]`` float32 in {0, 1}, in
            :func:`trainer.model.sequence.patchify` order (1 = noised and generated).
        frame_index: ``[T']`` int64, the contiguous latent index ``0 … T'−1`` RoPE uses.
        edits: The resolved edits, for provenance.
    """

    latents: torch.Tensor
    source_index: torch.Tensor
    noise_frames: torch.Tensor
    mask: torch.Tensor
    frame_index: torch.Tensor
    edits: list[LatentEdit] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        """``T'``, latent frames of the edited clip."""
        return self.latents.shape[2]

    @property
    def new_frames(self) -> torch.Tensor:
        """``[T']`` bool, frames with no source content."""
        return self.source_index < 0

    @property
    def video_frames(self) -> int:
        """Video frames the edited clip decodes to, ``8(T'−1)+1``."""
        return latent_to_video_frames(self.num_frames)

    def mask_grid(self) -> torch.Tensor:
        """``M`` as ``[B, T', H, W]``."""
        b, _, t, h, w = self.latents.shape
        return self.mask.reshape(b, t, h, w)

    def tokens(self) -> torch.Tensor:
        """Clean tokens ``[B, T'·H·W, C]`` (:func:`trainer.model.sequence.patchify`)."""
        return patchify(self.latents)

    def rope_coords(
        self, fps: torch.Tensor | float, spatial_compression: int = 32, temporal_compression: int = TEMPORAL_COMPRESSION
    ) -> torch.Tensor:
        """RoPE coordinates ``[B, 3, T'·H·W]`` of the edited tokens.

        Computed from :attr:`frame_index` with :func:`trainer.model.sequence.grid_coords`, so they equal
        :func:`trainer.model.sequence.video_coords` of a ``T'``-frame clip: a kept frame is positioned by
        where it now sits, not where it came from.

        Args:
            fps: Frame rate, scalar or ``[B]``.
            spatial_compression: Pixels per token side.
            temporal_compression: Video frames per latent frame.
        """
        b, _, t, h, w = self.latents.shape
        device = self.latents.device
        fps_t = torch.as_tensor(fps, dtype=torch.float32, device=device).reshape(-1).expand(b)
        f, r, c = video_token_grid(b, t, h, w, device)
        tau = self.frame_index.to(device)[f]
        return grid_coords(tau, r, c, fps_t, spatial_compression, temporal_compression)

    def initial_tokens(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start of sampling: Eq. 5 at flow time 1 on the edited tokens.

        Args:
            noise: ``ε`` ``[B, T'·H·W, C]``.

        Returns:
            ``(x_1 [B, N, C], per-token time [B, N])``: masked tokens are ``ε``, the rest the source latents.
        """
        x0 = self.tokens()
        t = torch.ones(x0.shape[0], device=x0.device)
        return noise_tokens(x0, noise.to(x0.dtype), t, self.mask)


def _region_mask(region: TokenBox | None, h: int, w: int, device: torch.device) -> torch.Tensor:
    if region is None:
        return torch.ones(h, w, dtype=torch.bool, device=device)
    return token_box_mask(torch.tensor(region, device=device), h, w)


def build_sequence(
    latents: torch.Tensor,
    plan: EditPlan,
    face_mask: torch.Tensor | None = None,
    edits: Sequence[LatentEdit] = (),
) -> EditedSequence:
    """Materialise an :class:`EditPlan` on latents.

    Args:
        latents: Source latents ``[B, C, T, H, W]``.
        plan: From :func:`plan_edits`.
        face_mask: Lower-face token mask of the source ``[B, T, H, W]`` (bool), e.g. from
            :func:`trainer.model.masks.face_token_mask`; ``None`` leaves kept frames at ``M = 0`` outside
            the edited regions (timeline edits without lip-sync).
        edits: Resolved edits to record.

    Returns:
        The :class:`EditedSequence`.
    """
    bsz, _, frames, h, w = latents.shape
    device = latents.device
    if face_mask is not None and tuple(face_mask.shape) != (bsz, frames, h, w):
        raise ValueError(
            f"face_mask {tuple(face_mask.shape)} does not match latents [B, T, H, W] {(bsz, frames, h, w)}"
        )
    src = torch.tensor(plan.source_index, dtype=torch.long, device=device)
    kept = src >= 0
    gather = src.clamp(min=0)

    out = latents.index_select(2, gather)
    out = out * kept.to(out.dtype)[None, None, :, None, None]

    m = torch.zeros(bsz, len(plan.source_index), h, w, dtype=torch.bool, device=device)
    if face_mask is not None:
        m = face_mask.to(device=device, dtype=torch.bool).index_select(1, gather) & kept[None, :, None, None]
    m = m | ~kept[None, :, None, None]  # new frames are generated entirely
    for i, regs in enumerate(plan.regions):
        for region in regs:
            m[:, i] |= _region_mask(region, h, w, device)
    on = torch.ones(bsz, dtype=torch.bool, device=device)
    # V2V on (the face box is what is regenerated on kept frames); no frame is a clean first-frame prompt.
    grid_m = noise_mask(m, v2v=on, first_frame=~on)
    mask = patchify(grid_m[:, None]).squeeze(-1)

    return EditedSequence(
        latents=out,
        source_index=src,
        noise_frames=grid_m.flatten(2).amin(dim=2).amin(dim=0) > 0,
        mask=mask,
        frame_index=torch.arange(len(plan.source_index), device=device),
        edits=list(edits),
    )


def apply_edits(
    latents: torch.Tensor,
    edits: Sequence[Edit],
    fps: float,
    face_mask: torch.Tensor | None = None,
    face_boxes: torch.Tensor | None = None,
    removal_context: int = 1,
    spatial_compression: int = 32,
) -> EditedSequence:
    """Apply a list of transcript edits (source seconds) to a latent clip.

    Args:
        latents: Source latents ``[B, C, T, H, W]``.
        edits: Edits on the source timeline, any order (see the module docstring for the rules).
        fps: Source video frame rate.
        face_mask: Lower-face token mask ``[B, T, H, W]`` of the source, or
        face_boxes: lower-face pixel boxes ``[B, 8(T−1)+1, 4]`` (x0, y0, x1, y1) turned into one with
            :func:`trainer.model.masks.face_token_mask`. At most one of the two; neither leaves kept
            frames clean outside edited regions.
        removal_context: Neighbour frames per side re-rendered around a cut, unless an edit sets its own.
        spatial_compression: Pixels per token side (for ``face_boxes``).

    Returns:
        The :class:`EditedSequence`.

    Raises:
        EditError: Naming the first bad edit (by list index) and the offending value.
    """
    if face_mask is not None and face_boxes is not None:
        raise ValueError("pass face_mask or face_boxes, not both")
    _, _, frames, h, w = latents.shape
    if face_boxes is not None:
        face_mask = face_token_mask(face_boxes, h, w, spatial_compression, TEMPORAL_COMPRESSION)
    resolved = [
        resolve_edit(e, frames, fps, (h, w), removal_context, label=f"edit {i} ({e.describe()})")
        for i, e in enumerate(edits)
    ]
    return build_sequence(latents, plan_edits(frames, resolved), face_mask, resolved)


# --------------------------------------------------------------------------------------------------------
# Single operations on latent indices (the primitives the edit list is made of)


def _single(latents: torch.Tensor, edit: LatentEdit, face_mask: torch.Tensor | None) -> EditedSequence:
    _, _, frames, h, w = latents.shape
    check_region(edit.region, h, w, edit.label)
    return build_sequence(latents, plan_edits(frames, [edit]), face_mask, [edit])


def add_frames(
    latents: torch.Tensor, position: int, count: int, face_mask: torch.Tensor | None = None
) -> EditedSequence:
    """Insert ``count`` fully noised latent frames before source frame ``position`` (``T`` appends).

    Args:
        latents: ``[B, C, T, H, W]``.
        position: Insertion index in ``[0, T]``.
        count: New frames, ``≥ 1``.
        face_mask: Optional source face mask ``[B, T, H, W]`` for the kept frames.

    Returns:
        :class:`EditedSequence` with ``T + count`` frames.
    """
    if count < 1:
        raise EditError(f"add_frames: count {count} must be ≥ 1")
    return _single(latents, LatentEdit("add", position, position, count, label=f"add {count} at {position}"), face_mask)


def remove_frames(
    latents: torch.Tensor,
    start: int,
    stop: int,
    context: int = 1,
    region: TokenBox | None = None,
    face_mask: torch.Tensor | None = None,
) -> EditedSequence:
    """Delete source frames ``[start, stop)`` and re-render ``context`` frames on each side of the cut.

    Args:
        latents: ``[B, C, T, H, W]``.
        start: First deleted frame.
        stop: End-exclusive.
        context: Neighbour frames per side with ``M = 1`` on ``region``.
        region: Token box of the neighbour re-render; ``None``: full frame.
        face_mask: Optional source face mask ``[B, T, H, W]``.

    Returns:
        :class:`EditedSequence` with ``T − (stop − start)`` frames.
    """
    if stop <= start:
        raise EditError(f"remove_frames: empty range {start}–{stop}")
    edit = LatentEdit("remove", start, stop, stop - start, region, context, f"remove {start}–{stop}")
    return _single(latents, edit, face_mask)


def rerender_frames(
    latents: torch.Tensor,
    start: int,
    stop: int,
    region: TokenBox | None = None,
    face_mask: torch.Tensor | None = None,
) -> EditedSequence:
    """Set ``M = 1`` on ``region`` (``None``: full frame) of source frames ``[start, stop)``; length unchanged."""
    if stop <= start:
        raise EditError(f"rerender_frames: empty range {start}–{stop}")
    edit = LatentEdit("rerender", start, stop, stop - start, region, label=f"rerender {start}–{stop}")
    return _single(latents, edit, face_mask)


def retime_frames(
    latents: torch.Tensor,
    start: int,
    stop: int,
    target: int,
    context: int = 1,
    region: TokenBox | None = None,
    face_mask: torch.Tensor | None = None,
) -> EditedSequence:
    """Stretch or squeeze source frames ``[start, stop)`` to ``target`` frames by spread additions/removals.

    Args:
        latents: ``[B, C, T, H, W]``.
        start: First frame of the span.
        stop: End-exclusive.
        target: New length of the span, ``≥ 1`` and ``≠ stop − start``.
        context: Removal neighbours per side (shortening).
        region: Neighbour re-render region (shortening); ``None``: full frame.
        face_mask: Optional source face mask ``[B, T, H, W]``.

    Returns:
        :class:`EditedSequence` with ``T − (stop − start) + target`` frames.
    """
    if stop <= start or target < 1 or target == stop - start:
        raise EditError(f"retime_frames: cannot retime {start}–{stop} to {target} frames")
    edit = LatentEdit("retime", start, stop, target, region, context, f"retime {start}–{stop} to {target}")
    return _single(latents, edit, face_mask)
