"""Edits of a transcript diff resolved on the source latent timeline, checked, and planned (EditYourself §3.3).

:class:`Edit` (seconds) becomes :class:`LatentEdit` (latent frames, :mod:`eval.sampler.edit_timeline`); a list of
them becomes an :class:`EditPlan`: which source frame goes where and which extra regions are re-rendered.
:mod:`eval.sampler.editing` builds the edited latent sequence from the plan.

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

from eval.sampler.edit_timeline import (
    TEMPORAL_COMPRESSION,
    duration_to_latent_frames,
    latent_span,
    latent_to_video_frames,
    round_half_up,
    seconds_to_latent_boundary,
    seconds_to_video_frame,
    spread_positions,
)

KINDS = ("add", "remove", "rerender", "retime")

TokenBox = tuple[int, int, int, int]


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


def check_region(region: TokenBox | None, grid_h: int, grid_w: int, label: str) -> None:
    """Refuse a token box ``(row0, col0, row1, col1)`` that is malformed or outside the ``grid_h × grid_w`` grid.

    Raises:
        EditError: Names ``label`` and the box.
    """
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
    check_region(edit.region, h, w, label)
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
