"""From per-frame analysis to usable segments and clip spans.

A segment is a maximal run of frames with one dominant face, no scene cut and no jump of the face box
(SayAnything appendix A: "split at jumps"); short detection gaps are bridged by interpolation.
Segments shorter than ``min_segment_s`` are dropped; a clip passes the face-size rule when its segment's face
has reached ``min_face_px`` by the clip's last frame (SayAnything discards videos whose face region never
exceeds 228×228). Clips are tiled from each segment's first frame, resampled to the clip frame rate by
timestamp (:mod:`data_prep.frame_rate`), so their positions never depend on where the analysis happened to
stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.config import ClipConfig, FaceConfig
from data_prep.frame_rate import nearest_frames, span_end

NO_FACE = "no_face"
MULTIPLE_FACES = "multiple_faces"
FACE_TOO_SMALL = "face_too_small"
FACE_JUMP = "face_jump"
SCENE_CUT = "scene_cut"
SEGMENT_TOO_SHORT = "segment_too_short"


@dataclass
class FaceTrack:
    """Per-frame face analysis of a video (all arrays over frames ``[N]``).

    Attributes:
        boxes: Dominant face box ``[N, 4]`` (NaN: none).
        lower: Dominant lower-face box ``[N, 4]`` (NaN: none).
        second_ratio: Area of the second largest face over the dominant one ``[N]`` (0: one face).
    """

    boxes: np.ndarray
    lower: np.ndarray
    second_ratio: np.ndarray


@dataclass
class Segment:
    """Frames ``[start, end)`` of a usable segment, with gap-bridged boxes.

    Attributes:
        start: First frame.
        end: One past the last frame.
        face_px: The largest shorter side of the face box over the segment, in source pixels: the quantity
            ``faces.min_face_px`` is checked against.
        duration_s: The segment's length: the quantity ``faces.min_segment_s`` is checked against.
    """

    start: int
    end: int
    face_px: float = float("nan")
    duration_s: float = float("nan")


def frame_failures(track: FaceTrack, cfg: FaceConfig) -> np.ndarray:
    """Why each frame cannot be in a segment (``""`` when it can). ``[N]`` object array."""
    n = track.boxes.shape[0]
    out = np.full(n, "", dtype=object)
    present = np.isfinite(track.boxes).all(axis=1)
    out[~present] = NO_FACE
    out[present & (track.second_ratio >= cfg.max_second_face_ratio)] = MULTIPLE_FACES
    return out


def face_sides(boxes: np.ndarray) -> np.ndarray:
    """Shorter side of each box ``[N]`` (NaN where there is no box)."""
    return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def bridge_gaps(track: FaceTrack, failures: np.ndarray, max_missing: int, final: int) -> tuple[FaceTrack, np.ndarray]:
    """Fill runs of at most ``max_missing`` face-less frames between two usable frames by interpolation.

    Args:
        track: Per-frame analysis.
        failures: From :func:`frame_failures`.
        max_missing: Longest gap to bridge.
        final: Frames at or after this index are not final yet (a gap there is left open).

    Returns:
        The track with interpolated boxes and the failures with bridged frames cleared.
    """
    boxes, lower = track.boxes.copy(), track.lower.copy()
    failures = failures.copy()
    n = len(failures)
    i = 0
    while i < n:
        if failures[i] != NO_FACE:
            i += 1
            continue
        j = i
        while j < n and failures[j] == NO_FACE:
            j += 1
        if i > 0 and j < min(n, final) and j - i <= max_missing and failures[i - 1] == "" and failures[j] == "":
            w = (np.arange(i, j) - (i - 1))[:, None] / (j - (i - 1))
            boxes[i:j] = (1 - w) * boxes[i - 1] + w * boxes[j]
            lower[i:j] = (1 - w) * lower[i - 1] + w * lower[j]
            failures[i:j] = ""
        i = j
    return FaceTrack(boxes, lower, track.second_ratio), failures


def clip_face_px(track: FaceTrack, segment: Segment, clip: np.ndarray) -> float:
    """The largest face (shorter box side, px) of the clip's segment from its start to the clip's last frame.

    This is what ``faces.min_face_px`` is checked against: it is final when the clip is cut (a face that grows
    later in the segment cannot change it), so the decision does not depend on how far decoding has got.
    """
    return float(np.nanmax(face_sides(track.boxes[segment.start : int(clip[-1]) + 1])))


def largest_usable_face(track: FaceTrack, cfg: FaceConfig) -> float | None:
    """The largest face (shorter box side, px) over the frames that can be in a segment.

    It is the best any segment reaches, so it says why a video whose segments were all too small failed
    ``faces.min_face_px``.
    """
    usable = frame_failures(track, cfg) == ""
    return float(np.nanmax(face_sides(track.boxes[usable]))) if usable.any() else None


def jumps(boxes: np.ndarray) -> np.ndarray:
    """Box centre displacement from the previous frame in units of the box's longer side ``[N]`` (0 at frame 0)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    d = np.zeros(len(boxes))
    d[1:] = np.linalg.norm(centre[1:] - centre[:-1], axis=1) / np.maximum(size[1:], 1e-6)
    return np.nan_to_num(d, nan=0.0)


def find_segments(
    times: np.ndarray, cuts: set[int], track: FaceTrack, cfg: FaceConfig, final: int
) -> tuple[list[Segment], FaceTrack, np.ndarray]:
    """Usable segments of the frames analysed so far.

    Args:
        times: Frame times ``[N]`` in seconds.
        cuts: Frames that start a new scene.
        track: Per-frame face analysis.
        cfg: Face settings.
        final: Analysis of frames before this index can no longer change.

    Returns:
        ``(segments, bridged track, per-frame reason [N])`` — segments lasting ``min_segment_s`` or more
        (an open one at ``final`` included: it may still grow), and for every frame outside them the
        reason (no face, several faces, small face, or the segment being too short).
    """
    failures = frame_failures(track, cfg)
    track, failures = bridge_gaps(track, failures, cfg.max_missing_frames, final)
    jump = jumps(track.boxes)
    n = len(failures)
    # A segment ending this close to `final` may still be extended: the gap after it can be bridged once its
    # end is known. It stays open (kept, whatever its length) until then.
    closed_before = final if final >= n else final - cfg.max_missing_frames
    segments: list[Segment] = []
    reasons = failures.copy()
    start = None
    for f in range(n + 1):
        usable = f < n and failures[f] == ""
        boundary = f < n and (f in cuts or jump[f] > cfg.max_jump)
        if start is not None and (not usable or boundary):
            end = f
            duration = times[end - 1] - times[start] + (times[1] - times[0] if n > 1 else 0.0)
            largest = float(np.nanmax(face_sides(track.boxes[start:end])))
            if duration < cfg.min_segment_s and end < closed_before:
                reasons[start:end] = SEGMENT_TOO_SHORT
            else:
                if largest < cfg.min_face_px and end < closed_before:
                    # SayAnything: a face region that never reaches 228x228 px has too little detail. The
                    # segment stays: each clip is judged on the face its segment reached by the clip's end
                    # (:func:`clip_face_px`), which is known when the clip is cut; this marks why none passed.
                    reasons[start:end] = FACE_TOO_SMALL
                segments.append(Segment(start, end, largest, float(duration)))
            start = None
        if usable and start is None:
            start = f
    return segments, track, reasons


def next_clip_start(times: np.ndarray, segment: Segment, cfg: ClipConfig, tiled: int) -> float:
    """Time at which the segment's next clip (after ``tiled`` clips that fit so far) starts, if it grows."""
    if cfg.fps is None:
        return float(times[min(segment.start + tiled * cfg.stride_frames, len(times) - 1)])
    return float(times[segment.start] + tiled * cfg.stride_frames / cfg.fps)


def tile_clips(times: np.ndarray, segment: Segment, cfg: ClipConfig) -> list[np.ndarray]:
    """Source frame indices of each clip tiled from the segment's start.

    With ``cfg.fps`` set, clip frame ``j`` of clip ``k`` shows the source frame nearest in time to
    ``t0 + (k·stride + j) / fps`` (the project's frame-rate rule, :func:`data_prep.frame_rate.nearest_frames`);
    without, clips take consecutive source frames.

    Returns:
        One ``[num_frames]`` int64 array per clip that fits entirely inside the segment.
    """
    s, e = segment.start, segment.end
    clips = []
    if cfg.fps is None:
        for a in range(s, e - cfg.num_frames + 1, cfg.stride_frames):
            clips.append(np.arange(a, a + cfg.num_frames))
        return clips
    seg_times = times[s:e]
    last, t0 = span_end(seg_times), seg_times[0]
    k = 0
    while True:
        target = t0 + (k * cfg.stride_frames + np.arange(cfg.num_frames)) / cfg.fps
        if target[-1] > last + 1e-9:
            return clips
        clips.append(s + nearest_frames(seg_times, target))
        k += 1


def reference_indices(
    times: np.ndarray,
    clip: np.ndarray,
    usable: np.ndarray,
    window_s: float,
    count: int,
    seed: int,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """Reference frames within ±``window_s`` of a clip, outside it, with a face (random but seeded).

    Falls back to candidate frames of the clip when the neighbourhood has too few faces, and to the clip's first
    frame when the clip has no candidate frame.

    Args:
        times: Frame times ``[N]``.
        clip: The clip's source frame indices.
        usable: ``[N]`` frames with a lower-face box.
        window_s: Half-width of the window around the clip.
        count: References to draw.
        seed: Seed of the draw.
        candidates: ``[N]`` frames that may be drawn at all (data_prep keeps only these in memory); all when
            ``None``.
    """
    allowed = np.ones(len(times), bool) if candidates is None else candidates
    t0, t1 = times[clip[0]], times[clip[-1]]
    near = (times >= t0 - window_s) & (times <= t1 + window_s) & usable & allowed
    outside = near.copy()
    outside[clip[0] : clip[-1] + 1] = False
    pool = np.flatnonzero(outside)
    if pool.size < count:
        pool = np.flatnonzero(near)
    if pool.size == 0:
        pool = clip[allowed[clip]] if allowed[clip].any() else clip[:1]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=count, replace=pool.size < count))
