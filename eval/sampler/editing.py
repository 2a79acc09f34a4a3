"""Visual dialog editing on latent sequences (EditYourself §3.3).

Transcript edits (add, remove, re-render, retime spoken content) become operations on the latent frame
sequence ``[B, C, T, H, W]`` of the encoded source video. The result, :class:`EditedSequence`, carries
the edited latents, where every latent frame came from, the per-token inpainting mask ``M``
(1 = noised and generated, the convention of :mod:`trainer.objectives.flow_matching`) and RoPE
coordinates recomputed on the edited sequence; the sampler denoises it like any V2V clip.

Time mapping (8-frame resolution)
---------------------------------
The causal VAE maps latent frame 0 to video frame 0 and latent frame ``n ≥ 1`` to video frames
``8(n−1)+1 … 8n`` (:func:`trainer.model.masks.latent_frame_groups`), so video frame ``f`` lies in latent
frame ``⌈f/8⌉``. Edit times are resolved in three steps:

* a time ``t`` becomes the video frame ``f = round_half_up(t·fps)`` (the frame boundary nearest to ``t``);
* a *boundary* at video frame ``f`` (add position, start and end of a remove/retime span) snaps to the
  start of the latent frame containing ``f``, i.e. latent index ``⌈f/8⌉``. Both ends of a span move in the
  same direction, so a span of ``d`` seconds keeps ``≈ d·fps/8`` latent frames (error below one frame);
* a *duration* ``d`` (inserted content, retime target) becomes ``round_half_up(d·fps/8)`` latent frames.

A re-render span instead *covers* every latent frame that holds one of its video frames,
``[⌈f0/8⌉, ⌈(f1−1)/8⌉ + 1)``: re-rendering a frame too many is harmless, leaving half an awkward expression
untouched is not. Every edit refers to the **source** timeline (the timestamps the transcript diff
produces for the original audio); the edited timeline follows from the list as a whole.

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

Several edits
-------------
All edits of a list are resolved on the source timeline first, then checked: spans (remove, re-render,
retime) must not share a latent frame, and an addition may sit on a span boundary but not strictly inside
one. The edited sequence is then built in one pass over the source frames, in time order, which is the same
as applying the edits from last to first (each edit leaves the indices before it valid) but needs no index
bookkeeping. Additions that snap to the same latent position are inserted in list order (their frames are
all noise, so the order only matters for provenance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from trainer.model.masks import face_token_mask, latent_frame_groups, token_box_mask
from trainer.model.sequence import grid_coords, patchify, video_token_grid
from trainer.objectives.flow_matching import noise_mask, noise_tokens

TEMPORAL_COMPRESSION = 8
KINDS = ("add", "remove", "rerender", "retime")

TokenBox = tuple[int, int, int, int]


# --------------------------------------------------------------------------------------------------------
# Seconds ↔ frames


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` rounds halves to even).

    The tiny epsilon absorbs float error in products such as ``0.1 · 25 = 2.5000000000000004`` or
    ``0.3 · 30 = 8.999999999999998``, which would otherwise flip frame boundaries.
    """
    return math.floor(x + 0.5 + 1e-6)


def seconds_to_video_frame(t: float, fps: float) -> int:
    """Video frame boundary nearest to ``t`` seconds: ``round_half_up(t·fps)``."""
    return round_half_up(t * fps)


def video_frame_to_latent(frame: int, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Latent frame holding video frame ``frame``: ``⌈frame/8⌉`` (frame 0 → latent 0)."""
    if frame < 0:
        raise ValueError(f"video frame {frame} is negative")
    return -(-frame // temporal_compression)


def seconds_to_latent_boundary(t: float, fps: float, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Latent index of the edit boundary at ``t`` seconds (start of the latent frame holding its video frame)."""
    return video_frame_to_latent(seconds_to_video_frame(t, fps), temporal_compression)


def duration_to_latent_frames(duration_s: float, fps: float, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Latent frames of ``duration_s`` seconds of content: ``round_half_up(duration_s·fps/8)``."""
    return round_half_up(duration_s * fps / temporal_compression)


def latent_span(
    start_s: float,
    end_s: float,
    fps: float,
    cover: bool = False,
    temporal_compression: int = TEMPORAL_COMPRESSION,
) -> tuple[int, int]:
    """Latent frames ``[start, stop)`` of the time span ``[start_s, end_s)``.

    Args:
        start_s: Span start in seconds.
        end_s: Span end in seconds (exclusive).
        fps: Video frame rate.
        cover: False snaps both boundaries to latent starts (remove, retime); True returns every latent
            frame holding one of the span's video frames (re-render).
        temporal_compression: Video frames per latent frame after frame 0.

    Returns:
        ``(start, stop)``; empty (``start == stop``) when the span is below the 8-frame resolution.
    """
    f0 = seconds_to_video_frame(start_s, fps)
    f1 = seconds_to_video_frame(end_s, fps)
    start = video_frame_to_latent(f0, temporal_compression)
    if cover:
        stop = video_frame_to_latent(f1 - 1, temporal_compression) + 1 if f1 > f0 else start
    else:
        stop = video_frame_to_latent(f1, temporal_compression)
    return start, max(start, stop)


def latent_to_video_frames(num_latent_frames: int, temporal_compression: int = TEMPORAL_COMPRESSION) -> int:
    """Video frames decoded from ``T'`` latent frames: ``8(T'−1)+1``."""
    if num_latent_frames < 1:
        raise ValueError(f"{num_latent_frames} latent frames decode to no video")
    return temporal_compression * (num_latent_frames - 1) + 1


def latent_frame_spans_s(
    num_latent_frames: int, fps: float, temporal_compression: int = TEMPORAL_COMPRESSION
) -> torch.Tensor:
    """Seconds ``[start, end)`` of the video frames each latent frame decodes to.

    Returns:
        ``[T', 2]`` float64: latent 0 covers ``[0, 1/fps)``, latent ``n`` covers ``[(8n−7)/fps, (8n+1)/fps)``.
    """
    groups = latent_frame_groups(latent_to_video_frames(num_latent_frames, temporal_compression), temporal_compression)
    return torch.tensor([[g.start / fps, g.stop / fps] for g in groups], dtype=torch.float64)


def audio_duration_s(num_latent_frames: int, fps: float, temporal_compression: int = TEMPORAL_COMPRESSION) -> float:
    """Seconds of audio the edited clip needs: its ``8(T'−1)+1`` video frames at ``fps``.

    The edited (voice-cloned) audio must cover ``[0, audio_duration_s)``; per-frame windows
    (:func:`trainer.model.audio_windows.sample_audio_windows`) mask whatever reaches beyond it.
    """
    return latent_to_video_frames(num_latent_frames, temporal_compression) / fps


def audio_samples(
    num_latent_frames: int, fps: float, sample_rate: int, temporal_compression: int = TEMPORAL_COMPRESSION
) -> int:
    """Audio samples at ``sample_rate`` covering the edited clip: ``⌈F'·sample_rate/fps⌉``."""
    exact = latent_to_video_frames(num_latent_frames, temporal_compression) * sample_rate / fps
    # The epsilon keeps an exact product (e.g. 201·16000/25) from rounding up on float error.
    return math.ceil(exact - 1e-6)


def spread_positions(count: int, length: int) -> list[int]:
    """``count`` positions in ``[0, length)`` spread as evenly as possible (Bresenham / centred spacing).

    Position ``j`` is ``⌊(j + ½)·length/count⌋``: consecutive gaps differ by at most one and the first and
    last positions sit half a gap from the ends, so no edit piles up at a span boundary.

    Args:
        count: Positions wanted, ``0 ≤ count ≤ length``.
        length: Slots to choose from.

    Returns:
        ``count`` strictly increasing ints.
    """
    if not 0 <= count <= length:
        raise ValueError(f"cannot spread {count} positions over {length} slots")
    return [(2 * j + 1) * length // (2 * count) for j in range(count)]


# --------------------------------------------------------------------------------------------------------
# Edits


@dataclass(frozen=True)
class Edit:
    """One transcript-driven edit, in seconds of the source video.

    Attributes:
        kind: ``"add"``, ``"remove"``, ``"rerender"`` or ``"retime"``.
        start_s: Position of an addition, or start of a span, in source seconds.
        end_s: End (exclusive) of a remove / rerender / retime span.
        duration_s: Length of the inserted content (add), or the target length of the span (retime;
            alternative to ``factor``).
        region: Token box ``(row0, col0, row1, col1)``, end-exclusive: the re-rendered region (rerender)
            or the re-noised region of the neighbours of a cut (remove, retime). ``None``: full frame.
        factor: Retime: target length over source length of the span.
        context: Remove / retime: neighbouring latent frames re-rendered on each side of a cut (``None``:
            the ``removal_context`` given to :func:`apply_edits`).
    """

    kind: str
    start_s: float
    end_s: float | None = None
    duration_s: float | None = None
    region: TokenBox | None = None
    factor: float | None = None
    context: int | None = None

    def describe(self) -> str:
        """Short human-readable form used in error messages."""
        if self.kind == "add":
            return f"add {self.duration_s} s at {self.start_s} s"
        text = f"{self.kind} {self.start_s}–{self.end_s} s"
        if self.kind == "retime":
            text += f" to {self.duration_s} s" if self.duration_s is not None else f" ×{self.factor}"
        return text


@dataclass(frozen=True)
class LatentEdit:
    """An edit resolved to latent frames of the source sequence.

    Attributes:
        kind: As :attr:`Edit.kind`.
        start: Add: insert before this source latent frame (``T`` appends). Spans: first source frame.
        stop: Spans: end-exclusive source frame; add: equal to ``start``.
        count: Add: new frames; retime: target length of the span; remove / rerender: ``stop − start``.
        region: As :attr:`Edit.region`.
        context: Neighbour frames per side re-rendered around each cut (remove, retime).
        label: Where the edit came from, for error messages.
    """

    kind: str
    start: int
    stop: int
    count: int
    region: TokenBox | None = None
    context: int = 1
    label: str = ""


class EditError(ValueError):
    """An edit that cannot be applied; the message names the edit and the offending value."""


def _check_region(region: TokenBox | None, grid_h: int, grid_w: int, label: str) -> None:
    if region is None:
        return
    if len(region) != 4:
        raise EditError(f"{label}: region {region} is not (row0, col0, row1, col1)")
    r0, c0, r1, c1 = (int(v) for v in region)
    if not (0 <= r0 < r1 <= grid_h and 0 <= c0 < c1 <= grid_w):
        raise EditError(f"{label}: region {tuple(region)} is empty or outside the {grid_h}x{grid_w} token grid")


def resolve_edit(
    edit: Edit,
    num_latent_frames: int,
    fps: float,
    grid: tuple[int, int],
    removal_context: int = 1,
    label: str | None = None,
    temporal_compression: int = TEMPORAL_COMPRESSION,
) -> LatentEdit:
    """Validate one edit and map it to latent frames of a ``T``-frame source sequence.

    Args:
        edit: The edit, in source seconds.
        num_latent_frames: ``T`` of the source latents.
        fps: Source video frame rate.
        grid: ``(H, W)`` latent token grid.
        removal_context: Default neighbour frames per side for remove / retime.
        label: Name used in error messages (default: the edit's own description).
        temporal_compression: Video frames per latent frame after frame 0.

    Returns:
        The :class:`LatentEdit`.

    Raises:
        EditError: Unknown kind, missing or contradictory fields, times outside the clip, spans below
            the 8-frame resolution, bad regions.
    """
    label = label or edit.describe()
    if edit.kind not in KINDS:
        raise EditError(f"{label}: kind {edit.kind!r} is not one of {KINDS}")
    if not (fps > 0 and math.isfinite(fps)):
        raise EditError(f"{label}: fps {fps} must be positive")
    clip_frames = latent_to_video_frames(num_latent_frames, temporal_compression)
    clip_s = clip_frames / fps
    if not (math.isfinite(edit.start_s) and edit.start_s >= 0):
        raise EditError(f"{label}: start_s {edit.start_s} must be a finite time ≥ 0")
    if seconds_to_video_frame(edit.start_s, fps) > clip_frames:
        raise EditError(f"{label}: start_s {edit.start_s} is past the end of the {clip_s:.3f} s clip")
    resolution = f"the latent resolution is {temporal_compression} frames = {temporal_compression / fps:.3f} s"
    context = removal_context if edit.context is None else edit.context
    if context < 0:
        raise EditError(f"{label}: context {context} must be ≥ 0")
    h, w = grid

    if edit.kind == "add":
        if edit.end_s is not None or edit.factor is not None or edit.region is not None:
            raise EditError(f"{label}: an addition takes start_s and duration_s only")
        if edit.duration_s is None or not edit.duration_s > 0:
            raise EditError(f"{label}: duration_s {edit.duration_s} must be > 0")
        count = duration_to_latent_frames(edit.duration_s, fps, temporal_compression)
        if count == 0:
            raise EditError(f"{label}: duration_s {edit.duration_s} rounds to 0 latent frames ({resolution})")
        pos = seconds_to_latent_boundary(edit.start_s, fps, temporal_compression)
        return LatentEdit("add", pos, pos, count, None, context, label)

    if edit.end_s is None or not edit.end_s > edit.start_s:
        raise EditError(f"{label}: end_s {edit.end_s} must be after start_s {edit.start_s}")
    if seconds_to_video_frame(edit.end_s, fps) > clip_frames:
        raise EditError(f"{label}: end_s {edit.end_s} is past the end of the {clip_s:.3f} s clip")
    _check_region(edit.region, h, w, label)
    start, stop = latent_span(edit.start_s, edit.end_s, fps, edit.kind == "rerender", temporal_compression)
    n = stop - start
    if n == 0:
        raise EditError(f"{label}: span {edit.start_s}–{edit.end_s} s covers 0 latent frames ({resolution})")

    if edit.kind in ("remove", "rerender"):
        if edit.duration_s is not None or edit.factor is not None:
            raise EditError(f"{label}: {edit.kind} takes no duration_s or factor")
        return LatentEdit(edit.kind, start, stop, n, edit.region, context, label)

    # Retime: exactly one way of giving the target length.
    if (edit.factor is None) == (edit.duration_s is None):
        raise EditError(f"{label}: retime needs exactly one of factor and duration_s")
    if edit.factor is not None:
        if not (edit.factor > 0 and math.isfinite(edit.factor)):
            raise EditError(f"{label}: factor {edit.factor} must be a finite number > 0")
        target = round_half_up(n * edit.factor)
    else:
        if not edit.duration_s > 0:
            raise EditError(f"{label}: duration_s {edit.duration_s} must be > 0")
        delta_s = edit.duration_s - (edit.end_s - edit.start_s)
        # The change is rounded on its own, so "+1.1 s" adds the same frames whatever the span's snapping.
        delta = int(math.copysign(duration_to_latent_frames(abs(delta_s), fps, temporal_compression), delta_s))
        target = n + delta
    if target < 1:
        raise EditError(f"{label}: retime shortens {n} latent frames to {target}; use a removal")
    if target == n:
        raise EditError(f"{label}: retime changes the span by 0 latent frames ({resolution})")
    return LatentEdit("retime", start, stop, target, edit.region, context, label)


def check_overlaps(edits: Sequence[LatentEdit]) -> None:
    """Reject spans sharing a latent frame and additions strictly inside a span.

    Raises:
        EditError: Naming both edits and their latent frames.
    """
    spans = sorted((e for e in edits if e.kind != "add"), key=lambda e: e.start)
    for a, b in zip(spans, spans[1:]):
        if b.start < a.stop:
            raise EditError(
                f"{a.label} (latent frames {a.start}–{a.stop - 1}) overlaps "
                f"{b.label} (latent frames {b.start}–{b.stop - 1})"
            )
    for add in (e for e in edits if e.kind == "add"):
        for s in spans:
            if s.start < add.start < s.stop:
                raise EditError(
                    f"{add.label} (before latent frame {add.start}) falls inside "
                    f"{s.label} (latent frames {s.start}–{s.stop - 1})"
                )


# --------------------------------------------------------------------------------------------------------
# Plan: which source frame goes where, and which extra regions are re-rendered


@dataclass
class EditPlan:
    """The edited timeline before any tensor is touched.

    Attributes:
        source_index: Per edited latent frame, its source latent frame, or −1 for a new frame.
        regions: Per edited frame, extra regions with ``M = 1`` (token boxes; ``None`` = full frame).
        cuts: Edited-sequence positions where source frames were deleted (before that frame index).
    """

    source_index: list[int]
    regions: list[list[TokenBox | None]]
    cuts: list[int] = field(default_factory=list)


def plan_edits(num_latent_frames: int, edits: Sequence[LatentEdit]) -> EditPlan:
    """Build the edited timeline from resolved, non-overlapping edits in one pass over the source frames.

    Args:
        num_latent_frames: ``T`` of the source.
        edits: Resolved edits (checked with :func:`check_overlaps`).

    Returns:
        :class:`EditPlan`; raises :class:`EditError` when every frame would be removed.
    """
    check_overlaps(edits)
    adds: dict[int, list[LatentEdit]] = {}
    spans: dict[int, LatentEdit] = {}
    for e in edits:
        if not 0 <= e.start <= num_latent_frames or e.stop > num_latent_frames:
            raise EditError(f"{e.label}: latent frames {e.start}–{e.stop} outside a {num_latent_frames}-frame clip")
        if e.kind == "add":
            adds.setdefault(e.start, []).append(e)
        else:
            spans[e.start] = e

    src: list[int] = []
    regions: list[list[TokenBox | None]] = []
    cut_context: dict[int, tuple[int, TokenBox | None]] = {}

    def emit(index: int, region: list[TokenBox | None] | None = None) -> None:
        src.append(index)
        regions.append(list(region or []))

    def cut(e: LatentEdit) -> None:
        # Consecutive deletions make one cut; keep the widest context asked for there.
        pos = len(src)
        prev = cut_context.get(pos)
        if prev is None or e.context > prev[0]:
            cut_context[pos] = (e.context, e.region)

    p = 0
    while p <= num_latent_frames:
        for e in adds.get(p, []):
            for _ in range(e.count):
                emit(-1)
        if p == num_latent_frames:
            break
        e = spans.get(p)
        if e is None:
            emit(p)
            p += 1
            continue
        n = e.stop - e.start
        if e.kind == "remove":
            cut(e)
        elif e.kind == "rerender":
            for q in range(e.start, e.stop):
                emit(q, [e.region])
        elif e.count > n:  # retime, lengthen: new frames at evenly spaced output positions
            new_at = set(spread_positions(e.count - n, e.count))
            q = e.start
            for j in range(e.count):
                if j in new_at:
                    emit(-1)
                else:
                    emit(q)
                    q += 1
        else:  # retime, shorten: evenly spaced source frames become removals
            drop = {e.start + j for j in spread_positions(n - e.count, n)}
            for q in range(e.start, e.stop):
                if q in drop:
                    cut(e)
                else:
                    emit(q)
        p = e.stop

    if not src:
        raise EditError("the edits remove every latent frame")

    # Re-render the neighbours of each cut, looking past new frames that fill it (a replaced word).
    for pos, (context, region) in sorted(cut_context.items()):
        g0, g1 = pos, pos
        while g0 > 0 and src[g0 - 1] < 0:
            g0 -= 1
        while g1 < len(src) and src[g1] < 0:
            g1 += 1
        for i in [*range(max(0, g0 - context), g0), *range(g1, min(len(src), g1 + context))]:
            regions[i].append(region)
    return EditPlan(source_index=src, regions=regions, cuts=sorted(cut_context))


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
    _check_region(edit.region, h, w, edit.label)
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
