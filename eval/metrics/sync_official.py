"""Sync-C / Sync-D / AV offset computed the way published tables compute them: the official file pipeline.

Papers report SyncNet scores from ``joonson/syncnet_python``'s ``run_pipeline.py`` followed by
``run_syncnet.py``, which never see the decoded frames talkdit holds in memory: they re-encode the video
and cut face tracks through files. This module runs the same steps with the same programs and settings
(``ffmpeg`` for every media step, OpenCV's XVID writer and JPEG frames, S3FD faces, PySceneDetect shots),
with talkdit's own implementations of the networks and the scoring (:mod:`eval.metrics.s3fd`,
:mod:`data_prep.models.syncnet`, :mod:`data_prep.models.syncnet_scoring`, checked against the official code
elsewhere):

1. ``ffmpeg -y -i <video> -qscale:v 2 -async 1 -r 25 video.avi`` (MPEG-4 part 2 at 25 fps by ffmpeg's frame
   dropping/repeating, MP3 audio), then ``-qscale:v 2 -threads 1 -f image2 %06d.jpg`` frames and
   ``-ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav`` from that file.
2. Faces in every JPEG frame: S3FD at scale 0.25, score above 0.9 (:meth:`eval.metrics.s3fd.S3FD.detect_faces`);
   without ``sfd_face.pth``, MediaPipe's detector stands in (:class:`data_prep.faces.FaceAnalyzer`) and
   :func:`protocol_note` says so in the tables.
3. Shots: PySceneDetect's ContentDetector (defaults, automatic downscaling) on ``video.avi``; shots of at
   least ``min_track`` frames are tracked (:func:`eval.metrics.face_tracks.track_shot`).
4. Per track: centre and half-size median-filtered over 13 frames, the official crop of each JPEG frame
   (:func:`data_prep.models.syncnet_crops.crop_faces`) written at 224×224 with OpenCV's XVID writer at 25 fps;
   the track's audio cut from ``audio.wav`` with ``ffmpeg -ss <start> -to <end>`` and muxed in (``-c copy``).
5. Per track file (``run_syncnet.py`` → ``SyncNetInstance.evaluate``): its frames written as JPEGs and
   read back with OpenCV, its audio extracted with ``-async 1 -ac 1 -vn -acodec pcm_s16le -ar 16000`` and
   read as int16, then SyncNet's windows, ±``vshift`` offset search, confidence and distance
   (:func:`data_prep.models.syncnet_scoring.score_clip`).

A video's value is the mean over its tracks (the scripts that fill published tables, e.g. Wav2Lip's
``calculate_scores_real_videos``, print one line per track and average the lines); talking-head clips
normally have one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.io import wavfile

from data_prep.models.syncnet import SyncNet
from data_prep.models.syncnet_crops import crop_faces, smooth_boxes
from data_prep.models.syncnet_scoring import SyncScores, score_clip
from eval.config import SYNC_PROTOCOLS
from eval.metrics.face_tracks import Detection, FaceTrack, track_shot
from eval.metrics.s3fd import S3FD

__all__ = [
    "PROTOCOLS",
    "OfficialSyncConfig",
    "OfficialSyncResult",
    "MediaPipeFaces",
    "official_sync",
    "official_sync_scores",
    "protocol_label",
    "protocol_note",
    "s3fd_detector",
]

PROTOCOLS = SYNC_PROTOCOLS
# A detector maps one RGB frame [H, W, 3] uint8 to its faces [K, 5] rows (x0, y0, x1, y1, score).
FaceDetector = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class OfficialSyncConfig:
    """The official scripts' settings (``run_pipeline.py`` and ``run_syncnet.py`` argument defaults).

    Attributes:
        frame_rate: Rate of the re-encoded video.
        facedet_scale: Image scale S3FD runs at.
        face_threshold: S3FD score a face must exceed (``detect_faces(conf_th=0.9)``).
        crop_scale: Crop margin around the face.
        min_track: A track needs more than this many detections; shorter shots are not tracked.
        num_failed_det: Missed frames a track survives.
        min_face_size: Mean face width or height a track must exceed, in pixels.
        vshift: Largest AV offset searched, in frames.
        batch_size: SyncNet windows per forward pass.
    """

    frame_rate: int = 25
    facedet_scale: float = 0.25
    face_threshold: float = 0.9
    crop_scale: float = 0.4
    min_track: int = 100
    num_failed_det: int = 25
    min_face_size: float = 100.0
    vshift: int = 15
    batch_size: int = 20


@dataclass(frozen=True)
class OfficialSyncResult:
    """Scores of one video under the official protocol.

    Attributes:
        tracks: One :class:`~data_prep.models.syncnet_scoring.SyncScores` per face track, in the pipeline's order.
        spans: ``(first, last + 1)`` frame of each track in the 25 fps video.
        detector: ``"s3fd"`` or ``"mediapipe"``.
    """

    tracks: list[SyncScores]
    spans: list[tuple[int, int]]
    detector: str

    @property
    def confidence(self) -> float:
        """Sync-C: mean over tracks."""
        return float(np.mean([t.confidence for t in self.tracks]))

    @property
    def min_dist(self) -> float:
        """Sync-D: mean over tracks."""
        return float(np.mean([t.min_dist for t in self.tracks]))

    @property
    def offset_frames(self) -> float:
        """AV offset in 25 fps frames: mean over tracks."""
        return float(np.mean([t.offset_frames for t in self.tracks]))


def protocol_label(protocol: str, s3fd_weights: str | os.PathLike | None = None) -> str:
    """What produced Sync-C/Sync-D, for a table column: ``direct``, ``official`` or ``official-mediapipe``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"sync_protocol={protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if protocol == "direct":
        return "direct"
    return "official" if s3fd_weights else "official-mediapipe"


def protocol_note(protocol: str, s3fd_weights: str | os.PathLike | None = None) -> str:
    """One sentence for a table saying how its Sync-C / Sync-D / AV offset were computed."""
    label = protocol_label(protocol, s3fd_weights)
    if label == "direct":
        return (
            "Sync-C / Sync-D / AV offset: direct protocol (talkdit's decoded frames and audio in memory, nearest "
            "frame at 25 fps, 16 kHz by libswresample, MediaPipe face boxes); not the file pipeline published "
            "numbers come from (sync_protocol=official)."
        )
    steps = "ffmpeg -r 25 re-encode, JPEG frames, shot detection, IoU face tracks, XVID crops, ffmpeg audio"
    if label == "official":
        return f"Sync-C / Sync-D / AV offset: official protocol (joonson/syncnet_python: {steps}; S3FD faces)."
    return (
        f"Sync-C / Sync-D / AV offset: official protocol steps ({steps}) but with MediaPipe face detection instead "
        "of S3FD (no sfd_face.pth given; set TALKDIT_S3FD): face boxes, and so the crops, differ from the "
        "published pipeline's."
    )


def s3fd_detector(detector: S3FD, cfg: OfficialSyncConfig | None = None) -> FaceDetector:
    """The official face detection call on a loaded :class:`eval.metrics.s3fd.S3FD`."""
    cfg = cfg or OfficialSyncConfig()
    return lambda rgb: detector.detect_faces(rgb, conf_th=cfg.face_threshold, scales=[cfg.facedet_scale])


class MediaPipeFaces:
    """MediaPipe's face detector as a :data:`FaceDetector`, the stand-in for S3FD; a context manager.

    Args:
        long_side: Detection runs on frames downscaled to this longer side.
        min_confidence: Detector threshold.
    """

    def __init__(self, long_side: int = 640, min_confidence: float = 0.5) -> None:
        from data_prep.faces import FaceAnalyzer

        self.analyzer = FaceAnalyzer(long_side=long_side, min_confidence=min_confidence, use_mesh=False)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB → ``[K, 5]`` rows ``(x0, y0, x1, y1, score)`` in pixels."""
        found = self.analyzer(rgb)
        return np.concatenate([found.boxes, found.scores[:, None]], axis=1).astype(np.float64)

    def __enter__(self) -> MediaPipeFaces:
        return self

    def __exit__(self, *exc) -> None:
        self.analyzer.close()


def _ffmpeg(*args: str) -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FileNotFoundError(
            "sync_protocol=official runs the ffmpeg command-line tool, which is not on PATH "
            "(make setup installs it; or use sync_protocol=direct)"
        )
    done = subprocess.run([exe, "-nostdin", "-y", "-loglevel", "error", *args], capture_output=True, text=True)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise ValueError(f"ffmpeg {' '.join(args)} failed (exit {done.returncode}): {tail}")


def _frame_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))  # BGR, as the official scripts read frames
    if image is None:
        raise ValueError(f"{path}: OpenCV cannot read this JPEG frame")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _shots(video: Path, num_frames: int) -> list[tuple[int, int]]:
    from scenedetect import ContentDetector, SceneManager, open_video

    manager = SceneManager()
    manager.add_detector(ContentDetector())
    manager.detect_scenes(open_video(str(video)))
    shots = [(start.frame_num, end.frame_num) for start, end in manager.get_scene_list()]
    return shots or [(0, num_frames)]


def _write_track(frames: list[Path], track: FaceTrack, cfg: OfficialSyncConfig, audio: Path, out: Path) -> None:
    """``crop_video``: XVID crops of one track with its audio cut from the full track, muxed into ``out``."""
    boxes = smooth_boxes(track.boxes)
    silent = out.with_name(out.stem + "t.avi")
    writer = cv2.VideoWriter(str(silent), cv2.VideoWriter_fourcc(*"XVID"), cfg.frame_rate, (224, 224))
    if not writer.isOpened():
        raise ValueError(f"{silent}: OpenCV cannot open an XVID writer (its FFmpeg backend is missing)")
    try:
        for box, frame in zip(boxes, track.frames):
            bgr = cv2.imread(str(frames[frame]))
            writer.write(crop_faces(bgr[None], box[None], cfg.crop_scale)[0])
    finally:
        writer.release()
    cut = out.with_name(out.stem + "_audio.wav")
    start, end = track.frames[0] / cfg.frame_rate, (track.frames[-1] + 1) / cfg.frame_rate
    _ffmpeg("-i", str(audio), "-ss", f"{start:.3f}", "-to", f"{end:.3f}", str(cut))
    _ffmpeg("-i", str(silent), "-i", str(cut), "-c:v", "copy", "-c:a", "copy", str(out))
    silent.unlink()


def _evaluate(model: SyncNet, track_file: Path, work: Path, cfg: OfficialSyncConfig) -> SyncScores:
    """``SyncNetInstance.evaluate`` on one track file: JPEG frames and 16-bit audio through ffmpeg, then SyncNet."""
    folder = work / f"{track_file.stem}_eval"
    folder.mkdir()
    _ffmpeg("-i", str(track_file), "-threads", "1", "-f", "image2", str(folder / "%06d.jpg"))
    wav = folder / "audio.wav"
    _ffmpeg("-i", str(track_file), "-async", "1", "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000", str(wav))
    crops = np.stack([_read_rgb(p) for p in _frame_files(folder)])
    rate, audio = wavfile.read(wav)
    if rate != 16000 or audio.dtype != np.int16 or audio.ndim != 1:
        raise ValueError(f"{wav}: expected 16 kHz mono int16 from ffmpeg, got {rate} Hz {audio.dtype} {audio.shape}")
    return score_clip(model, crops, audio, fps=25.0, batch_size=cfg.batch_size, vshift=cfg.vshift)


def official_sync_scores(
    model: SyncNet,
    video: str | os.PathLike,
    detector: FaceDetector,
    detector_name: str,
    cfg: OfficialSyncConfig | None = None,
) -> OfficialSyncResult:
    """Score a video file with the official pipeline's steps (module docstring).

    Args:
        model: SyncNet (:func:`data_prep.models.syncnet.load_syncnet`).
        video: A video file with audio (any container ffmpeg reads).
        detector: Faces of one RGB frame (:func:`s3fd_detector` or :class:`MediaPipeFaces`).
        detector_name: ``"s3fd"`` or ``"mediapipe"`` (recorded in the result).
        cfg: The official settings (default: the scripts' defaults).

    Returns:
        Per-track scores and their means.

    Raises:
        FileNotFoundError: ``video`` or the ffmpeg program is missing.
        ValueError: A media step fails, or no face track is long and large enough (the message gives the
            official thresholds).
    """
    cfg = cfg or OfficialSyncConfig()
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"{video}: no such video file")
    with tempfile.TemporaryDirectory(prefix="talkdit-syncnet-") as tmp:
        work = Path(tmp)  # the official pyavi / pyframes / pycrop folders, removed afterwards
        avi_dir, frame_dir, crop_dir = work / "pyavi", work / "pyframes", work / "pycrop"
        for d in (avi_dir, frame_dir, crop_dir):
            d.mkdir()
        avi, audio = avi_dir / "video.avi", avi_dir / "audio.wav"
        _ffmpeg("-i", str(video), "-qscale:v", "2", "-async", "1", "-r", str(cfg.frame_rate), str(avi))
        _ffmpeg("-i", str(avi), "-qscale:v", "2", "-threads", "1", "-f", "image2", str(frame_dir / "%06d.jpg"))
        _ffmpeg("-i", str(avi), "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000", str(audio))
        frames = _frame_files(frame_dir)
        faces = []
        for i, path in enumerate(frames):
            found = detector(_read_rgb(path))
            faces.append([Detection(i, tuple(float(v) for v in row[:4]), float(row[4])) for row in found])
        tracks: list[FaceTrack] = []
        for start, end in _shots(avi, len(frames)):
            if end - start >= cfg.min_track:
                tracks += track_shot(faces[start:end], cfg.min_track, cfg.num_failed_det, cfg.min_face_size)
        if not tracks:
            raise ValueError(
                f"{video}: no face track of more than {cfg.min_track} frames with faces larger than "
                f"{cfg.min_face_size:g} px in {len(frames)} frames at {cfg.frame_rate} fps ({detector_name} faces; "
                "the official pipeline's min_track and min_face_size)"
            )
        scores = []
        for i, track in enumerate(tracks):
            track_file = crop_dir / f"{i:05d}.avi"
            _write_track(frames, track, cfg, audio, track_file)
            scores.append(_evaluate(model, track_file, work, cfg))
    spans = [(int(t.frames[0]), int(t.frames[-1]) + 1) for t in tracks]
    return OfficialSyncResult(scores, spans, detector_name)


def official_sync(
    model: SyncNet,
    s3fd: S3FD | None,
    video: str | os.PathLike | None = None,
    frames: np.ndarray | None = None,
    audio: np.ndarray | None = None,
    fps: float | None = None,
    sample_rate: int | None = None,
    cfg: OfficialSyncConfig | None = None,
) -> OfficialSyncResult:
    """The official protocol on a video file, or on frames and audio first written as one (H.264 + AAC mp4).

    Args:
        model: SyncNet.
        s3fd: S3FD (:func:`eval.metrics.s3fd.load_s3fd` of ``sfd_face.pth``); ``None``: MediaPipe faces.
        video: The file to score; when ``None``, ``frames``/``audio``/``fps``/``sample_rate`` are written to a
            temporary mp4, as a generated sample would be saved.
        frames: ``[T, H, W, 3]`` uint8 RGB (without ``video``).
        audio: ``[S]`` mono float in [-1, 1] or int16 (without ``video``).
        fps: Frame rate of ``frames``.
        sample_rate: Rate of ``audio``.
        cfg: Official settings.

    Raises:
        FileNotFoundError: ffmpeg is absent.
        ValueError: See :func:`official_sync_scores`.
    """
    from data_prep.media import write_mp4

    cfg = cfg or OfficialSyncConfig()
    with tempfile.TemporaryDirectory(prefix="talkdit-sample-") as tmp:
        if video is None:
            if frames is None or audio is None or fps is None or sample_rate is None:
                raise ValueError("official_sync needs a video file, or frames, audio, fps and sample_rate")
            pcm = np.asarray(audio)
            wave = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm.astype(np.float32)
            video = Path(tmp) / "sample.mp4"
            write_mp4(
                video, frames, fps, audio=wave[: round(frames.shape[0] / fps * sample_rate)], sample_rate=sample_rate
            )
        if s3fd is not None:
            return official_sync_scores(model, video, s3fd_detector(s3fd, cfg), "s3fd", cfg)
        with MediaPipeFaces() as faces:
            return official_sync_scores(model, video, faces, "mediapipe", cfg)
