"""Processing one source video: probe → decode once → scenes and faces in memory → clips → scores → samples.

The file is decoded once. Each frame is analysed as it is decoded (a downscaled copy for scene cuts,
another for face detection); full-resolution frames are held (as YUV 4:2:0) only while a clip may still start
on them or, for evenly spaced reference candidates, while a clip may still draw references from them. Clips
are checked and encoded as soon as their frames are settled, so memory is bounded by about one clip and
``execution.window_s`` of frames, whatever the video's length. Cheap filters run first and models only on what
survives; each kept clip is encoded once, straight into its shard sample.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.analysis import FrameAnalysis
from data_prep.audio import AUDIO_RATE, audio_window
from data_prep.captions import load_captioner, sidecar_caption
from data_prep.config import DataPrepConfig
from data_prep.decisions import quality_decision, sync_decision, thresholds_json
from data_prep.decode import DecodeError, SourceDecoder
from data_prep.frame_buffer import FrameBuffer, output_size
from data_prep.frame_rate import SYNCNET_FPS, rate_view
from data_prep.ledger import ERROR, KEPT, REJECTED
from data_prep.media import encode_mp4_i420
from data_prep.probe import ProbeError, probe_rejection, probe_video
from data_prep.samples import (
    EncodedClip,
    clip_latents,
    clip_settings_fingerprint,
    file_sha256,
    make_clip_id,
    reference_latents,
    sample_members,
)
from data_prep.segments import (
    FACE_TOO_SMALL,
    FaceTrack,
    Segment,
    clip_face_px,
    face_sides,
    find_segments,
    jumps,
    largest_usable_face,
    next_clip_start,
    reference_indices,
    tile_clips,
)

log = logging.getLogger(__name__)

NO_CLIPS = "no_usable_segment"
AUDIO_TOO_SHORT = "audio_too_short"
INTERNAL_ERROR = "internal_error"


@dataclass
class Models:
    """Models a worker loads once and reuses for every video.

    Attributes:
        whisper: Whisper feature extractor (always).
        syncnet: SyncNet, when the stage is on.
        hyperiqa: HyperIQA, when the stage is on.
        vae: LTX VAE, when latents are cached.
        fingerprints: Name → fingerprint of each model's weights.
    """

    whisper: object
    syncnet: object | None = None
    hyperiqa: object | None = None
    vae: object | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)


@dataclass
class Candidate:
    """A clip candidate: source frame indices, the face boxes over them, and the segment it was cut from."""

    indices: np.ndarray
    boxes: np.ndarray
    lower: np.ndarray
    segment: Segment


@dataclass
class PendingClip:
    """A clip that passed every check and is encoded, waiting for the frames its references are drawn from.

    Attributes:
        row: Its ledger row (completed when the sample is written).
        cand: The candidate it was cut from.
        start_s: Source time of its first frame.
        end_s: Source time of its last frame.
        size: Stored ``(height, width)``.
        video_mp4: The encoded clip.
        audio: Its 16 kHz audio.
        whisper: Its Whisper features.
        face_boxes: Face boxes at the stored size.
        lower_face_boxes: Lower-face boxes at the stored size.
        caption: Its caption.
        latents: Its VAE posterior (``latent_mean``/``latent_logvar``), when latents are cached.
        timings: Seconds per stage so far.
    """

    row: dict
    cand: Candidate
    start_s: float
    end_s: float
    size: tuple[int, int]
    video_mp4: bytes
    audio: np.ndarray
    whisper: np.ndarray
    face_boxes: np.ndarray
    lower_face_boxes: np.ndarray
    caption: str | None
    latents: dict | None
    timings: dict


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
        self.score_cache = score_cache or {}
        self.thresholds = thresholds_json(cfg)
        self.settings_fp = clip_settings_fingerprint(cfg)
        self.captioner = load_captioner(cfg.features.captioner)

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
                clip_row, waiting = self._cut(path, digest, probe, cand, tarr, track, buffer, decoder, unit)
                clip_rows.append(clip_row)
                if waiting is not None:
                    pending.append(waiting)
                release(tarr, horizon, [later for _, later in ready[k + 1 :]])
            usable = np.isfinite(track.lower).all(axis=1)
            usable[stable:] = False  # not final yet: no reference is drawn from there
            candidates = np.arange(n) % ref_stride == 0
            for waiting in list(pending):
                if final or (stable > 0 and tarr[stable - 1] >= waiting.end_s + ref_s):
                    self._finish(waiting, tarr, usable, candidates, track.lower, buffer, emit)
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

    def _caption(self, path: Path, frames: np.ndarray | None, fps: float) -> str | None:
        caption = sidecar_caption(path, self.cfg)
        if caption is None and self.captioner is not None:
            caption = str(self.captioner(frames, fps, str(path))).strip() or None
        return caption if caption is not None else self.cfg.features.default_caption

    # ------------------------------------------------------------------ scores
    def _sync_scores(
        self, buffer: FrameBuffer, idx: np.ndarray, boxes: np.ndarray, audio: np.ndarray, clip_times: np.ndarray
    ):
        """SyncNet on the clip's face crops (official crop geometry over median-smoothed boxes).

        SyncNet reads 25 fps video: a clip at another rate is scored on its 25 fps view of the same span
        (:func:`data_prep.frame_rate.rate_view` over ``clip_times``, the times the clip's frames stand for), with
        the clip's audio; offsets are in SyncNet's 40 ms frames. A 25 fps clip is scored on its own frames.
        """
        from data_prep.models.syncnet import crop_faces, score_clip, smooth_boxes

        smoothed = smooth_boxes(boxes)
        view = rate_view(clip_times, SYNCNET_FPS)
        scale = self.cfg.sync.crop_scale
        # One frame at a time: only the 224-px crops are held, never the clip's full-size frames.
        crops = np.concatenate([crop_faces(buffer.rgb(int(idx[k]))[None], smoothed[k : k + 1], scale) for k in view])
        s = score_clip(
            self.models.syncnet,
            crops,
            audio,
            fps=SYNCNET_FPS,
            batch_size=self.cfg.sync.batch_size,
            vshift=self.cfg.sync.vshift,
        )
        return {
            "sync_offset_frames": int(s.offset_frames),
            "sync_confidence": float(s.confidence),
            "sync_min_dist": float(s.min_dist),
        }

    @staticmethod
    def _offset_samples(row: dict) -> int:
        """Samples by which to delay the audio to undo the measured offset (SyncNet frames of 40 ms).

        SyncNet matches video window ``i`` best with audio window ``i − offset``: a positive offset means the
        sound comes early, so the clip's corrected audio starts ``offset`` frames earlier in the source track.
        """
        return round(row["sync_offset_frames"] / SYNCNET_FPS * AUDIO_RATE)

    def _quality(self, buffer: FrameBuffer, idx: np.ndarray) -> float:
        """HyperIQA score of the clip under the documented frame and crop protocol."""
        from data_prep.models.hyperiqa import sample_frame_indices, score_frames

        q = self.cfg.quality
        # Only the frames the protocol samples are converted; scoring them alone samples them all, in order.
        chosen = sample_frame_indices(len(idx), q.num_frames)
        frames = np.stack([buffer.rgb(int(idx[k])) for k in chosen])
        return float(
            score_frames(
                self.models.hyperiqa,
                frames,
                num_frames=len(chosen),
                crops_per_frame=q.crops_per_frame,
                seed=self.cfg.seed,
            ).score
        )

    # ------------------------------------------------------------------ one clip candidate
    def _cut(self, path, digest, probe, cand: Candidate, times, track: FaceTrack, buffer, decoder, unit):
        """Check and encode one clip candidate whose frames are settled.

        Returns:
            ``(row, pending)``: the row, and the clip waiting for its references when it passed every check
            (``None`` when it was rejected; the row says why).
        """
        cfg = self.cfg
        idx = cand.indices
        clip_fps = cfg.clips.fps or probe.fps
        span = (int(idx[0]), int(idx[-1]) + 1)
        clip_id = make_clip_id(digest, span[0], span[1], self.settings_fp)
        start_s = float(times[idx[0]])
        face_px = clip_face_px(track, cand.segment, idx)
        row = self._base_row(path, unit)
        row.update(
            clip_id=clip_id,
            kind="clip",
            source_sha256=digest,
            span_start=span[0],
            span_end=span[1],
            start_s=start_s,
            end_s=start_s + cfg.clips.num_frames / clip_fps,
            fps=clip_fps,
            num_frames=cfg.clips.num_frames,
            width=probe.width,
            height=probe.height,
            face_min_side_px=float(np.nanmin(face_sides(cand.boxes))),
            segment_face_px=face_px,
            segment_s=float(times[idx[-1]] - times[cand.segment.start]) + 1.0 / (probe.fps or clip_fps),
            face_max_jump=float(jumps(track.boxes[idx[0] : idx[-1] + 1]).max()),
            face_max_second_ratio=float(track.second_ratio[idx[0] : idx[-1] + 1].max()),
            stages_ran=["probe", "decode", "scenes", "faces"],
        )
        if cfg.faces.enabled and face_px < cfg.faces.min_face_px:
            # SayAnything: a face region that never reaches 228x228 px has too little detail.
            row.update(
                status=REJECTED,
                reason=FACE_TOO_SMALL,
                stage="faces",
                message=f"the face of the clip's segment reached {face_px:.0f} px < {cfg.faces.min_face_px} px",
            )
            return row, None
        a0 = round(start_s * AUDIO_RATE)
        n_audio = round(cfg.clips.num_frames / clip_fps * AUDIO_RATE)
        audio = decoder.audio_so_far()[a0 : a0 + n_audio]
        if audio.shape[0] < n_audio:
            row.update(
                status=REJECTED,
                reason=AUDIO_TOO_SHORT,
                stage="decode",
                message=f"audio ends {(n_audio - audio.shape[0]) / AUDIO_RATE:.2f} s before the clip",
            )
            return row, None
        # The times the clip's frames stand for: their ticks when resampled, their own timestamps at the source rate.
        clip_times = times[idx] if cfg.clips.fps is None else start_s + np.arange(len(idx)) / clip_fps
        cached = self.score_cache.get(clip_id, {})
        clip_t: dict[str, float] = {}
        if cfg.sync.enabled:
            row["stages_ran"].append("sync")
            if "sync_confidence" in cached:
                row.update({k: v for k, v in cached.items() if k.startswith("sync_")})
            else:
                t = time.perf_counter()
                row.update(self._sync_scores(buffer, idx, cand.boxes, audio, clip_times))
                clip_t["sync"] = time.perf_counter() - t
            if cfg.sync.correct_offset and row["sync_offset_frames"] and "sync_confidence_corrected" not in cached:
                # Delay (or advance) the audio by the measured offset, taken from the source track, and re-check.
                shifted = audio_window(decoder.audio_so_far(), a0 - self._offset_samples(row), n_audio)
                corrected = self._sync_scores(buffer, idx, cand.boxes, shifted, clip_times)
                row.update({f"{k}_corrected": v for k, v in corrected.items()})
            failed = sync_decision(row, cfg)
            if failed:
                row.update(
                    status=REJECTED, reason=failed[0], message=failed[1], stage="sync", timings=json.dumps(clip_t)
                )
                return row, None
            if cfg.sync.correct_offset and row.get("sync_confidence_corrected") is not None:
                audio = audio_window(decoder.audio_so_far(), a0 - self._offset_samples(row), n_audio)
        if cfg.quality.enabled:
            row["stages_ran"].append("quality")
            if "quality_score" in cached:
                row["quality_score"] = cached["quality_score"]
            else:
                t = time.perf_counter()
                row["quality_score"] = self._quality(buffer, idx)
                clip_t["quality"] = time.perf_counter() - t
            failed = quality_decision(row, cfg)
            if failed:
                row.update(
                    status=REJECTED, reason=failed[0], message=failed[1], stage="quality", timings=json.dumps(clip_t)
                )
                return row, None
        t = time.perf_counter()
        h, w = buffer.rgb(int(idx[0])).shape[:2]
        size = output_size(h, w, cfg.clips.max_long_side)
        factor = np.array([size[1] / w, size[0] / h, size[1] / w, size[0] / h], np.float32)
        frames_needed = self.captioner is not None and sidecar_caption(path, cfg) is None
        stacked = (
            np.stack([buffer.rgb(int(i), size) for i in idx]) if frames_needed or cfg.features.vae_latents else None
        )
        caption = self._caption(path, stacked, clip_fps)
        latents = clip_latents(stacked, self.models.vae) if cfg.features.vae_latents else None
        whisper = self.models.whisper.encode(audio).numpy()
        clip_t["features"] = time.perf_counter() - t
        t = time.perf_counter()
        video = encode_mp4_i420((buffer.planar(int(i), size) for i in idx), size, clip_fps, cfg.features.crf)
        clip_t["encode"] = time.perf_counter() - t
        waiting = PendingClip(
            row=row,
            cand=cand,
            start_s=start_s,
            end_s=float(times[idx[-1]]),
            size=size,
            video_mp4=video,
            audio=audio,
            whisper=whisper,
            face_boxes=cand.boxes * factor,
            lower_face_boxes=cand.lower * factor,
            caption=caption,
            latents=latents,
            timings=clip_t,
        )
        row.update(status=KEPT, reason="", stage="references", message="waiting for its reference frames")
        return row, waiting

    def _finish(self, waiting: PendingClip, times, usable, candidates, lower, buffer: FrameBuffer, emit) -> None:
        """Draw a waiting clip's references, encode them and write its sample (completes its row)."""
        cfg, row, idx = self.cfg, waiting.row, waiting.cand.indices
        t = time.perf_counter()
        refs = reference_indices(
            times,
            idx,
            usable,
            cfg.features.reference_window_s,
            cfg.features.num_reference_frames,
            seed=int(row["clip_id"][:8], 16) ^ cfg.seed,
            candidates=candidates,
        )
        missing = [int(i) for i in refs if i not in buffer]
        if missing:
            raise RuntimeError(f"reference frames {missing[:3]} were released from the buffer too early")
        h, w = buffer.rgb(int(refs[0])).shape[:2]
        factor = np.array([waiting.size[1] / w, waiting.size[0] / h] * 2, np.float32)
        latents = dict(waiting.latents or {})
        if cfg.features.vae_latents:
            ref_rgb = np.stack([buffer.rgb(int(i), waiting.size) for i in refs])
            latents.update(reference_latents(ref_rgb, self.models.vae))
        ref_mp4 = encode_mp4_i420(
            [buffer.planar(int(i), waiting.size) for i in refs], waiting.size, row["fps"], cfg.features.crf
        )
        row["stages_ran"].append("features")
        clip = EncodedClip(
            clip_id=row["clip_id"],
            source=row["source"],
            span=(row["span_start"], row["span_end"]),
            fps=row["fps"],
            num_frames=len(idx),
            size=waiting.size,
            video_mp4=waiting.video_mp4,
            audio=waiting.audio,
            sample_rate=AUDIO_RATE,
            whisper=waiting.whisper,
            face_boxes=waiting.face_boxes,
            lower_face_boxes=waiting.lower_face_boxes,
            ref_mp4=ref_mp4,
            num_reference_frames=len(refs),
            ref_lower_face_boxes=lower[refs] * factor,
            caption=waiting.caption,
            scores={k: row.get(k) for k in ("sync_confidence", "sync_offset_frames", "sync_min_dist", "quality_score")},
            latents=latents or None,
        )
        waiting.timings["features"] = waiting.timings.get("features", 0.0) + time.perf_counter() - t
        row["shard"] = emit(sample_members(clip))
        row.update(
            status=KEPT,
            reason="",
            stage="done",
            message="",
            timings=json.dumps({k: round(v, 4) for k, v in waiting.timings.items()}),
        )
