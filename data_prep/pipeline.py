"""Processing one source video: probe → decode once → scenes and faces in memory → clips → scores → samples.

The file is decoded once. Each frame is analysed as it is decoded (a downscaled copy for scene cuts,
another for face detection); full-resolution frames stay in a rolling buffer only as long as a clip or
a clip's reference window may still need them, so memory is bounded by ``execution.window_s`` plus one
clip and its ±5 s reference window, whatever the video's length. Cheap filters run first and models
only on what survives; each kept clip is encoded once, straight into its shard sample.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from data_prep.analysis import FrameAnalysis
from data_prep.config import DataPrepConfig
from data_prep.decisions import quality_decision, sync_decision, thresholds_json
from data_prep.decode import AUDIO_RATE, DecodeError, SourceDecoder
from data_prep.ledger import ERROR, KEPT, REJECTED
from data_prep.probe import ProbeError, probe_rejection, probe_video
from data_prep.samples import ClipArrays, attach_latents, encode_sample, make_clip_id
from data_prep.segments import FaceTrack, Segment, face_sides, find_segments, jumps, largest_usable_face, tile_clips
from trainer.config.errors import ConfigError

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


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content (clip ids follow content, not names)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def clip_settings_fingerprint(cfg: DataPrepConfig) -> str:
    """Hash of the settings that shape a clip's content (not the thresholds that judge it)."""
    relevant = {"clips": [cfg.clips.num_frames, cfg.clips.fps], "audio_rate": AUDIO_RATE}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def sidecar_caption(path: Path, cfg: DataPrepConfig) -> str | None:
    """Caption from a sidecar file next to the video (``<stem><suffix>``), if any."""
    for suffix in cfg.features.caption_sidecar_suffixes:
        sidecar = path.with_name(path.stem + suffix)
        if sidecar.is_file():
            text = sidecar.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text
    return None


def load_captioner(spec: str | None) -> Callable[[np.ndarray, float, str], str] | None:
    """Import a captioner given as ``"package.module:function"``.

    Raises:
        ConfigError: The spec is malformed or does not name a callable.
    """
    if spec is None:
        return None
    module_name, sep, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr) if sep else None
    except (ImportError, AttributeError) as err:
        raise ConfigError("features.captioner", spec, f"cannot be imported: {err}") from err
    if not callable(fn):
        raise ConfigError("features.captioner", spec, "must name a callable as 'package.module:function'")
    return fn


def audio_window(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples of ``audio`` from ``start``; silence where the window leaves the track."""
    out = np.zeros(length, np.float32)
    lo, hi = max(0, start), min(audio.shape[0], start + length)
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out


def fit_long_side(frames: np.ndarray, boxes: list[np.ndarray], max_long_side: int | None) -> tuple[np.ndarray, list]:
    """Downscale frames ``[N, H, W, 3]`` so the longer side is at most ``max_long_side`` (even sides), boxes along."""
    h, w = frames.shape[1:3]
    if max_long_side is None or max(h, w) <= max_long_side:
        return frames, boxes
    scale = max_long_side / max(h, w)
    nh, nw = 2 * round(h * scale / 2), 2 * round(w * scale / 2)
    out = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in frames])
    factor = np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
    return out, [b * factor for b in boxes]


def reference_indices(
    times: np.ndarray, clip: np.ndarray, usable: np.ndarray, window_s: float, count: int, seed: int
) -> np.ndarray:
    """Reference frames within ±``window_s`` of a clip, outside it, with a face (random but seeded).

    Falls back to frames of the clip when the neighbourhood has too few faces.
    """
    t0, t1 = times[clip[0]], times[clip[-1]]
    near = (times >= t0 - window_s) & (times <= t1 + window_s) & usable
    outside = near.copy()
    outside[clip[0] : clip[-1] + 1] = False
    pool = np.flatnonzero(outside)
    if pool.size < count:
        pool = np.flatnonzero(near)
    if pool.size == 0:
        pool = clip
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=count, replace=pool.size < count))


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
        cfg = self.cfg
        decoder = SourceDecoder(path, expected_frames=probe.num_frames, analysis_long_side=cfg.faces.analysis_long_side)
        buffer: dict[int, np.ndarray] = {}
        emitted: set[int] = set()
        clip_rows: list[dict] = []
        fps = probe.fps or 25.0
        ref_s = cfg.features.reference_window_s
        # Scene cuts and face gaps are only settled some frames after they happen.
        lag = max(cfg.scenes.min_scene_len, cfg.faces.max_missing_frames) + 2
        last_window = 0.0
        row["stages_ran"] = (
            ["probe", "decode"] + (["scenes"] if cfg.scenes.enabled else []) + (["faces"] if cfg.faces.enabled else [])
        )

        def process_ready(analysis: FrameAnalysis, final: bool) -> None:
            n = len(analysis)
            settled = n if final else max(0, n - lag)
            tarr = np.asarray(analysis.times)
            segments, track, _ = find_segments(tarr, analysis.cuts, analysis.track(), cfg.faces, settled)
            keep_from = settled
            for seg in segments:
                for idx in tile_clips(tarr, seg, cfg.clips):
                    if idx[0] in emitted:
                        continue
                    ready = idx[-1] < settled and (final or tarr[-1] >= tarr[idx[-1]] + ref_s)
                    if not ready:
                        keep_from = min(keep_from, int(idx[0]))
                        continue
                    emitted.add(int(idx[0]))
                    cand = Candidate(idx, track.boxes[idx], track.lower[idx], seg)
                    clip_rows.append(self._clip(path, digest, probe, cand, tarr, track, buffer, decoder, unit, emit))
            # Frames before the earliest frame a future clip or its references can use are released.
            if keep_from < n:
                horizon = tarr[min(keep_from, n - 1)] - ref_s - 1.0 / fps
                for i in [i for i in buffer if tarr[i] < horizon]:
                    del buffer[i]

        t_dec = time.perf_counter()
        with FrameAnalysis(cfg.scenes, cfg.faces, fps) as analysis:
            for frame in decoder.frames():
                buffer[frame.index] = frame.image
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

    def _caption(self, path: Path, frames: np.ndarray, fps: float) -> str | None:
        caption = sidecar_caption(path, self.cfg)
        if caption is None and self.captioner is not None:
            caption = str(self.captioner(frames, fps, str(path))).strip() or None
        return caption if caption is not None else self.cfg.features.default_caption

    # ------------------------------------------------------------------ scores
    def _sync_scores(self, frames: np.ndarray, boxes: np.ndarray, audio: np.ndarray, fps: float) -> dict:
        """SyncNet on the clip's face crops (official crop geometry over median-smoothed boxes)."""
        from data_prep.models.syncnet import crop_faces, score_clip, smooth_boxes

        crops = crop_faces(frames, smooth_boxes(boxes), self.cfg.sync.crop_scale)
        s = score_clip(
            self.models.syncnet, crops, audio, fps=fps, batch_size=self.cfg.sync.batch_size, vshift=self.cfg.sync.vshift
        )
        return {
            "sync_offset_frames": int(s.offset_frames),
            "sync_confidence": float(s.confidence),
            "sync_min_dist": float(s.min_dist),
        }

    @staticmethod
    def _offset_samples(row: dict, fps: float) -> int:
        """Samples by which to delay the audio to undo the measured offset.

        SyncNet matches video window ``i`` best with audio window ``i − offset``: a positive offset means the
        sound comes early, so the clip's corrected audio starts ``offset`` frames earlier in the source track.
        """
        return round(row["sync_offset_frames"] / fps * AUDIO_RATE)

    def _quality(self, frames: np.ndarray) -> float:
        """HyperIQA score of the clip under the documented frame and crop protocol."""
        from data_prep.models.hyperiqa import score_frames

        q = self.cfg.quality
        return float(
            score_frames(
                self.models.hyperiqa,
                frames,
                num_frames=q.num_frames,
                crops_per_frame=q.crops_per_frame,
                seed=self.cfg.seed,
            ).score
        )

    # ------------------------------------------------------------------ one clip candidate
    def _clip(self, path, digest, probe, cand: Candidate, times, track: FaceTrack, buffer, decoder, unit, emit) -> dict:
        cfg = self.cfg
        idx = cand.indices
        clip_fps = cfg.clips.fps or probe.fps
        span = (int(idx[0]), int(idx[-1]) + 1)
        clip_id = make_clip_id(digest, span[0], span[1], self.settings_fp)
        start_s = float(times[idx[0]])
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
            segment_face_px=cand.segment.face_px,
            segment_s=cand.segment.duration_s,
            face_max_jump=float(jumps(track.boxes[idx[0] : idx[-1] + 1]).max()),
            face_max_second_ratio=float(track.second_ratio[idx[0] : idx[-1] + 1].max()),
            stages_ran=["probe", "decode", "scenes", "faces"],
        )
        frames = np.stack([buffer[i] for i in idx])
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
            return row
        cached = self.score_cache.get(clip_id, {})
        clip_t: dict[str, float] = {}
        if cfg.sync.enabled:
            row["stages_ran"].append("sync")
            if "sync_confidence" in cached:
                row.update({k: v for k, v in cached.items() if k.startswith("sync_")})
            else:
                t = time.perf_counter()
                row.update(self._sync_scores(frames, cand.boxes, audio, clip_fps))
                clip_t["sync"] = time.perf_counter() - t
            if cfg.sync.correct_offset and row["sync_offset_frames"] and "sync_confidence_corrected" not in cached:
                # Delay (or advance) the audio by the measured offset, taken from the source track, and re-check.
                shifted = audio_window(decoder.audio_so_far(), a0 - self._offset_samples(row, clip_fps), n_audio)
                corrected = self._sync_scores(frames, cand.boxes, shifted, clip_fps)
                row.update({f"{k}_corrected": v for k, v in corrected.items()})
            failed = sync_decision(row, cfg)
            if failed:
                row.update(
                    status=REJECTED, reason=failed[0], message=failed[1], stage="sync", timings=json.dumps(clip_t)
                )
                return row
            if cfg.sync.correct_offset and row.get("sync_confidence_corrected") is not None:
                audio = audio_window(decoder.audio_so_far(), a0 - self._offset_samples(row, clip_fps), n_audio)
        if cfg.quality.enabled:
            row["stages_ran"].append("quality")
            if "quality_score" in cached:
                row["quality_score"] = cached["quality_score"]
            else:
                t = time.perf_counter()
                row["quality_score"] = self._quality(frames)
                clip_t["quality"] = time.perf_counter() - t
            failed = quality_decision(row, cfg)
            if failed:
                row.update(
                    status=REJECTED, reason=failed[0], message=failed[1], stage="quality", timings=json.dumps(clip_t)
                )
                return row
        t = time.perf_counter()
        usable = np.isfinite(track.lower).all(axis=1)
        refs = reference_indices(
            times,
            idx,
            usable,
            cfg.features.reference_window_s,
            cfg.features.num_reference_frames,
            seed=int(clip_id[:8], 16) ^ cfg.seed,
        )
        missing = [int(i) for i in refs if i not in buffer]
        if missing:
            raise RuntimeError(f"reference frames {missing[:3]} were released from the buffer too early")
        out_frames, (out_boxes, out_lower) = fit_long_side(frames, [cand.boxes, cand.lower], cfg.clips.max_long_side)
        ref_frames, (ref_lower,) = fit_long_side(
            np.stack([buffer[int(i)] for i in refs]), [track.lower[refs]], cfg.clips.max_long_side
        )
        clip = ClipArrays(
            clip_id=clip_id,
            source=str(path),
            span=span,
            fps=clip_fps,
            frames=out_frames,
            audio=audio,
            sample_rate=AUDIO_RATE,
            whisper=self.models.whisper.encode(audio).numpy(),
            face_boxes=out_boxes,
            lower_face_boxes=out_lower,
            ref_frames=ref_frames,
            ref_lower_face_boxes=ref_lower,
            caption=self._caption(path, out_frames, clip_fps),
            scores={k: row.get(k) for k in ("sync_confidence", "sync_offset_frames", "sync_min_dist", "quality_score")},
        )
        if cfg.features.vae_latents:
            attach_latents(clip, self.models.vae)
        row["stages_ran"].append("features")
        clip_t["features"] = time.perf_counter() - t
        t = time.perf_counter()
        row["shard"] = emit(encode_sample(clip, crf=cfg.features.crf))
        clip_t["encode"] = time.perf_counter() - t
        row.update(
            status=KEPT,
            reason="",
            stage="done",
            message="",
            timings=json.dumps({k: round(v, 4) for k, v in clip_t.items()}),
        )
        return row
