"""Processing one source video: probe → decode once → scenes and faces in memory → clips → scores → samples.

The file is decoded once. Each frame is analysed as it is decoded (a downscaled copy for scene cuts,
another for face detection); full-resolution frames are held (as YUV 4:2:0) only while a clip may still start
on them or, for evenly spaced reference candidates, while a clip may still draw references from them. Clips
are checked and encoded as soon as their frames are settled (:mod:`data_prep.clip_stages`), so memory is
bounded by about one clip and ``execution.window_s`` of frames, whatever the video's length. Cheap filters run
first and models only on what survives; each kept clip is encoded once, straight into its shard sample.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data_prep.analysis import FrameAnalysis
from data_prep.clip_stages import Candidate, ClipStages, PendingClip
from data_prep.config import DataPrepConfig
from data_prep.decisions import thresholds_json
from data_prep.decode import DecodeError, SourceDecoder
from data_prep.frame_buffer import FrameBuffer
from data_prep.ledger import ERROR, KEPT, REJECTED
from data_prep.models import Models
from data_prep.probe import ProbeError, probe_rejection, probe_video
from data_prep.samples import file_sha256
from data_prep.segments import (
    Segment,
    face_sides,
    find_segments,
    largest_usable_face,
    next_clip_start,
    tile_clips,
)

log = logging.getLogger(__name__)

NO_CLIPS = "no_usable_segment"
INTERNAL_ERROR = "internal_error"


class VideoProcessor:
    """Runs the stages over one video and reports ledger rows and shard samples.

    Args:
        cfg: Pipeline config.
        models: Loaded models.
        config_fingerprint: Fingerprint stored in every row.
        score_cache: ``clip_id`` → stored SyncNet/HyperIQA scores from an earlier run with the same models.
    """

    def __init__(
        self,
        cfg: DataPrepConfig,
        models: Models,
        config_fingerprint: str,
        score_cache: dict[str, dict] | None = None,
    ):
        self.cfg = cfg
        self.models = models
        self.config_fingerprint = config_fingerprint
        self.thresholds = thresholds_json(cfg)
        self.clips = ClipStages(cfg, models, self._base_row, score_cache or {})

    def _base_row(self, path: Path, unit: int) -> dict:
        return {
            "kind": "video",
            "unit": unit,
            "source": str(path),
            "thresholds": self.thresholds,
            "config_fingerprint": self.config_fingerprint,
            "model_fingerprints": json.dumps(self.models.fingerprints, sort_keys=True),
            "stages_ran": [],
        }

    def process(self, path: Path, unit: int, emit: Callable[[dict], str]) -> list[dict]:
        """Process one video.

        Args:
            path: Source video (never modified).
            unit: Work unit number (stored in the rows).
            emit: Called with each kept clip's shard sample; returns the shard it went to.

        Returns:
            The video row followed by one row per clip candidate.
        """
        timings: dict[str, float] = {}
        row = self._base_row(path, unit)
        try:
            digest = file_sha256(path)
        except OSError as err:
            row.update(clip_id="", status=ERROR, reason="unreadable", stage="read", message=str(err))
            return [row]
        row.update(clip_id=digest[:20], source_sha256=digest, span_start=0)
        t = time.perf_counter()
        try:
            probe = probe_video(path)
        except ProbeError as err:
            row.update(status=REJECTED, reason=err.reason, stage="probe", message=str(err), stages_ran=["probe"])
            return [row]
        timings["probe"] = time.perf_counter() - t
        row["stages_ran"] = ["probe"]
        row.update(
            fps=probe.fps,
            bitrate_kbps=probe.bitrate_kbps,
            num_frames=probe.num_frames,
            duration_s=probe.duration_s,
            width=probe.width,
            height=probe.height,
            vfr=probe.vfr,
            has_audio=probe.has_audio,
            audio_rate=probe.audio_rate,
            audio_channels=probe.audio_channels,
            span_end=probe.num_frames,
            start_s=0.0,
            end_s=probe.duration_s,
        )
        failed = probe_rejection(probe, self.cfg.probe)
        if failed:
            row.update(status=REJECTED, reason=failed[0], message=failed[1], stage="probe", timings=json.dumps(timings))
            return [row]
        try:
            clip_rows = self._decode_and_cut(path, digest, probe, row, timings, unit, emit)
        except DecodeError as err:
            row.update(
                status=REJECTED, reason=err.reason, stage="decode", message=str(err), timings=json.dumps(timings)
            )
            return [row]
        except Exception as err:  # a batch job records the failure and carries on
            log.exception("internal error on %s", path)
            row.update(
                status=ERROR,
                reason=INTERNAL_ERROR,
                stage="pipeline",
                message=f"{type(err).__name__}: {err}",
                timings=json.dumps(timings),
            )
            return [row]
        row["timings"] = json.dumps({k: round(v, 4) for k, v in timings.items()})
        kept = [r for r in clip_rows if r["status"] == KEPT]
        if kept:
            row.update(status=KEPT, reason="", stage="done", message=f"{len(kept)} of {len(clip_rows)} clips kept")
        elif clip_rows:
            reasons = [r["reason"] for r in clip_rows]
            top = max(set(reasons), key=reasons.count)
            row.update(status=REJECTED, reason=top, stage="done", message=f"no clip kept ({len(clip_rows)} candidates)")
        return [row, *clip_rows]

    # ------------------------------------------------------------------ decode once, analyse in memory
    def _decode_and_cut(self, path, digest, probe, row, timings, unit, emit) -> list[dict]:
        """Decode once, analyse every frame as it arrives, and cut clips as soon as their frames are settled.

        Every ``execution.window_s`` seconds of video the frames analysed so far are cut into clips. A clip whose
        frames are settled is checked (audio, SyncNet, HyperIQA) and encoded at once, and its frames released;
        it waits, as a few megabytes of encoded video, until the analysis has passed ``reference_window_s``
        beyond its end, when its references are drawn and its sample written. Between clips only the frames
        that a clip may still start on and evenly spaced reference candidates
        (``features.reference_candidates_per_s``) are held, as YUV 4:2:0: memory is about one clip and a window
        of full-size frames, whatever the video's length.
        """
        cfg = self.cfg
        decoder = SourceDecoder(path, expected_frames=probe.num_frames, analysis_long_side=cfg.faces.analysis_long_side)
        buffer = FrameBuffer()
        emitted: set[int] = set()
        pending: list[PendingClip] = []
        clip_rows: list[dict] = []
        fps = probe.fps or 25.0
        ref_s = cfg.features.reference_window_s
        ref_stride = max(1, round(fps / cfg.features.reference_candidates_per_s))
        # Scene cuts and face gaps are only settled some frames after they happen.
        lag = max(cfg.scenes.min_scene_len, cfg.faces.max_missing_frames) + 2
        last_window = 0.0
        row["stages_ran"] = (
            ["probe", "decode"] + (["scenes"] if cfg.scenes.enabled else []) + (["faces"] if cfg.faces.enabled else [])
        )

        def release(tarr: np.ndarray, horizon: float, later: list[np.ndarray]) -> None:
            # Clip frames are held from the earliest time a clip may still start at (and those of the clips
            # `later` in this round); reference candidates (and the first frame of waiting clips, their
            # last-resort reference) from reference_window_s before the earliest clip that may still draw
            # references: a waiting one, one later in this round, or one still to be cut.
            needed = {int(i) for idx in later for i in idx}
            starts = [horizon, *(p.start_s for p in pending), *(float(tarr[idx[0]]) for idx in later)]
            ref_from = min(starts) - ref_s - 1.0 / fps
            firsts = {int(p.cand.indices[0]) for p in pending}
            for i in buffer.indices():
                t = tarr[i]
                keep = i in needed or t >= horizon - 0.5 / fps
                keep = keep or (t >= ref_from and (i % ref_stride == 0 or i in firsts))
                if not keep:
                    buffer.drop(i)

        def process_ready(analysis: FrameAnalysis, final: bool) -> None:
            n = len(analysis)
            settled = n if final else max(0, n - lag)
            # Bridging a face gap can still change frames this close to the settled ones.
            stable = n if final else max(0, settled - cfg.faces.max_missing_frames - 1)
            tarr = np.asarray(analysis.times)
            segments, track, _ = find_segments(tarr, analysis.cuts, analysis.track(), cfg.faces, settled)
            horizon = float(tarr[settled]) if settled < n else float("inf")
            ready: list[tuple[Segment, np.ndarray]] = []
            for seg in segments:
                tiles = tile_clips(tarr, seg, cfg.clips)
                for idx in tiles:
                    if int(idx[0]) in emitted:
                        continue
                    if idx[-1] < settled:
                        ready.append((seg, idx))
                    else:
                        horizon = min(horizon, float(tarr[idx[0]]))
                if seg.end >= stable and not final:  # the segment may still grow: keep where its next clip starts
                    horizon = min(horizon, next_clip_start(tarr, seg, cfg.clips, len(tiles)))
            for k, (seg, idx) in enumerate(ready):
                emitted.add(int(idx[0]))
                cand = Candidate(idx, track.boxes[idx], track.lower[idx], seg)
                clip_row, waiting = self.clips.cut(path, digest, probe, cand, tarr, track, buffer, decoder, unit)
                clip_rows.append(clip_row)
                if waiting is not None:
                    pending.append(waiting)
                release(tarr, horizon, [later for _, later in ready[k + 1 :]])
            usable = np.isfinite(track.lower).all(axis=1)
            usable[stable:] = False  # not final yet: no reference is drawn from there
            candidates = np.arange(n) % ref_stride == 0
            for waiting in list(pending):
                if final or (stable > 0 and tarr[stable - 1] >= waiting.end_s + ref_s):
                    self.clips.finish(waiting, tarr, usable, candidates, track.lower, buffer, emit)
                    pending.remove(waiting)
            release(tarr, horizon, [])

        t_dec = time.perf_counter()
        with FrameAnalysis(cfg.scenes, cfg.faces, fps) as analysis:
            for frame in decoder.frames():
                buffer.add(frame.index, frame.image)
                analysis.add(frame)
                if frame.time_s - last_window >= cfg.execution.window_s:
                    last_window = frame.time_s
                    process_ready(analysis, final=False)
            process_ready(analysis, final=True)
        timings["decode+analysis+clips"] = time.perf_counter() - t_dec
        timings.update(analysis.seconds)
        track = analysis.track()
        present = np.isfinite(track.boxes).all(axis=1)
        row.update(
            scene_cuts=len(analysis.cuts),
            face_fraction=float(np.mean(present & (track.second_ratio < cfg.faces.max_second_face_ratio))),
            face_min_side_px=float(np.nanmin(face_sides(track.boxes))) if present.any() else None,
            segment_face_px=largest_usable_face(track, cfg.faces),
        )
        if not clip_rows:
            segments, _, reasons = find_segments(
                np.asarray(analysis.times), analysis.cuts, track, cfg.faces, len(analysis)
            )
            counted = [r for r in reasons.tolist() if r]
            reason = max(set(counted), key=counted.count) if counted else NO_CLIPS
            row.update(
                status=REJECTED,
                reason=reason,
                stage="faces" if cfg.faces.enabled else "scenes",
                message=f"no clip of {cfg.clips.num_frames} frames fits a usable segment ({len(segments)} segments)",
            )
        return clip_rows
