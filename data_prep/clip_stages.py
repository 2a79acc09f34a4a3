"""One clip candidate's stages, from its settled frames to its shard sample.

A candidate whose frames are settled is checked, cheap checks first (face size, audio length, then SyncNet and
HyperIQA, reusing stored scores), and when it passes its features are computed and it is encoded at once
(:meth:`ClipStages.cut`), so that its full-size frames can be released. It then waits as a
:class:`PendingClip`, a few megabytes of encoded video, until the frames its references are drawn from are
settled; :meth:`ClipStages.finish` draws and encodes them and writes the sample.
:class:`data_prep.pipeline.VideoProcessor` decides when each step runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.audio import AUDIO_RATE, audio_window
from data_prep.captions import load_captioner, sidecar_caption
from data_prep.config import DataPrepConfig
from data_prep.decisions import quality_decision, sync_decision
from data_prep.frame_buffer import FrameBuffer, output_size
from data_prep.frame_rate import SYNCNET_FPS, rate_view
from data_prep.ledger import KEPT, REJECTED
from data_prep.media import encode_mp4_i420
from data_prep.models import Models
from data_prep.samples import (
    EncodedClip,
    clip_latents,
    clip_settings_fingerprint,
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
    jumps,
    reference_indices,
)

AUDIO_TOO_SHORT = "audio_too_short"


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


class ClipStages:
    """Checks and encodes the clip candidates of a worker's videos, and writes their samples.

    Args:
        cfg: Pipeline config.
        models: Loaded models.
        base_row: ``(path, unit)`` → a new ledger row with the fields every row of that video carries.
        score_cache: ``clip_id`` → stored SyncNet/HyperIQA scores from an earlier run with the same models.
    """

    def __init__(
        self,
        cfg: DataPrepConfig,
        models: Models,
        base_row: Callable[[Path, int], dict],
        score_cache: dict[str, dict],
    ):
        self.cfg = cfg
        self.models = models
        self.base_row = base_row
        self.score_cache = score_cache
        self.settings_fp = clip_settings_fingerprint(cfg)
        self.captioner = load_captioner(cfg.features.captioner)

    def _caption(self, path: Path, frames: np.ndarray | None, fps: float) -> str | None:
        caption = sidecar_caption(path, self.cfg)
        if caption is None and self.captioner is not None:
            caption = str(self.captioner(frames, fps, str(path))).strip() or None
        return caption if caption is not None else self.cfg.features.default_caption

    def _sync_scores(
        self, buffer: FrameBuffer, idx: np.ndarray, boxes: np.ndarray, audio: np.ndarray, clip_times: np.ndarray
    ):
        """SyncNet on the clip's face crops (official crop geometry over median-smoothed boxes).

        SyncNet reads 25 fps video: a clip at another rate is scored on its 25 fps view of the same span
        (:func:`data_prep.frame_rate.rate_view` over ``clip_times``, the times the clip's frames stand for), with
        the clip's audio; offsets are in SyncNet's 40 ms frames. A 25 fps clip is scored on its own frames.
        """
        # Imported here (torch): a unit that rejects every clip before scoring never loads it, and
        # tests/data_prep/test_scores.py patches syncnet_scoring.score_clip, which this lookup sees.
        from data_prep.models.syncnet_crops import crop_faces, smooth_boxes
        from data_prep.models.syncnet_scoring import score_clip

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
        # Imported here for the reasons given in _sync_scores (torch; the tests patch hyperiqa_scoring.score_frames).
        from data_prep.models.hyperiqa_scoring import sample_frame_indices, score_frames

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

    def cut(self, path, digest, probe, cand: Candidate, times, track: FaceTrack, buffer, decoder, unit):
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
        row = self.base_row(path, unit)
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

    def finish(self, waiting: PendingClip, times, usable, candidates, lower, buffer: FrameBuffer, emit) -> None:
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
