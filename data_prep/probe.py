"""Container probing with PyAV: streams, frame rate, bitrate, frame count, audio — no decoding.

The frame count and variable-frame-rate flag come from demuxing the video packets (cheap: no pixel is
decoded), because container headers are often wrong or missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

# Reason codes a probe can produce (the ledger stores the code; the message gives the detail).
NOT_MEDIA = "not_media"
EMPTY_FILE = "empty_file"
NO_VIDEO = "no_video_stream"
NO_AUDIO = "no_audio_stream"
FPS_OUT_OF_RANGE = "fps_out_of_range"
LOW_BITRATE = "bitrate_too_low"
TOO_FEW_FRAMES = "too_few_frames"
TRUNCATED = "truncated"


@dataclass
class ProbeResult:
    """What a video file holds.

    Attributes:
        size_bytes: File size.
        format_name: Container format (as ffprobe's ``format_name``).
        duration_s: Container duration.
        bitrate_kbps: Container bitrate (ffprobe's ``format.bit_rate``) in kbit/s.
        has_video: A video stream exists.
        has_audio: An audio stream exists.
        width: Coded width of the video.
        height: Coded height.
        codec: Video codec.
        fps: Average frame rate (ffprobe's ``avg_frame_rate``).
        num_frames: Video packets demuxed (one per frame for the codecs talkdit reads).
        vfr: Frame durations vary by more than 1% around their median (variable frame rate).
        audio_rate: Audio sample rate (0 without audio).
        audio_channels: Audio channels (0 without audio).
    """

    size_bytes: int
    format_name: str
    duration_s: float
    bitrate_kbps: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    codec: str = ""
    fps: float = 0.0
    num_frames: int = 0
    vfr: bool = False
    audio_rate: int = 0
    audio_channels: int = 0

    def to_dict(self) -> dict:
        """Plain dict for the ledger."""
        return asdict(self)


class ProbeError(Exception):
    """The file cannot be probed as a video; ``reason`` is a ledger reason code."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


def probe_video(path: str | Path) -> ProbeResult:
    """Probe a media file.

    Args:
        path: The file.

    Returns:
        The probe result (filters are applied separately, by :func:`probe_rejection`).

    Raises:
        ProbeError: Empty or unreadable file (``empty_file``, ``not_media``), no video stream, or fewer
            frames than the header announces (``truncated``).
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ProbeError(EMPTY_FILE, f"{path} is empty")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise ProbeError(NOT_MEDIA, f"{path} is not a readable media file: {err}") from err
    with container:
        if not container.streams.video:
            raise ProbeError(NO_VIDEO, f"{path} has no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = container.duration / av.time_base if container.duration else 0.0
        bitrate = (container.bit_rate or 0) / 1000.0
        rate = video.average_rate or video.guessed_rate or 0
        pts = []
        try:
            for packet in container.demux(video):
                if packet.pts is not None and packet.size > 0:
                    pts.append(packet.pts)
        except av.error.FFmpegError:
            pass  # a truncated file: count what was readable; decoding will report the damage
        num_frames = len(pts)
        vfr = False
        if num_frames > 2:
            deltas = np.diff(np.sort(np.asarray(pts, dtype=np.float64)))
            med = np.median(deltas)
            vfr = bool(med > 0 and np.mean(np.abs(deltas - med) > 0.01 * med) > 0.01)
        announced = int(video.frames or 0)
        if announced and num_frames < 0.98 * announced - 1:
            raise ProbeError(TRUNCATED, f"{path} holds {num_frames} of the {announced} frames its header announces")
        if not duration and num_frames and rate:
            duration = num_frames / float(rate)
        if not bitrate and duration:
            bitrate = size * 8 / duration / 1000.0
        return ProbeResult(
            size_bytes=size,
            format_name=container.format.name,
            duration_s=float(duration),
            bitrate_kbps=float(bitrate),
            has_video=True,
            has_audio=audio is not None,
            width=int(video.codec_context.width),
            height=int(video.codec_context.height),
            codec=video.codec_context.name,
            fps=float(rate),
            num_frames=num_frames,
            vfr=vfr,
            audio_rate=int(audio.rate) if audio is not None else 0,
            audio_channels=int(audio.channels) if audio is not None else 0,
        )


def probe_rejection(result: ProbeResult, cfg) -> tuple[str, str] | None:
    """Apply the probe filters.

    Args:
        result: Probe values.
        cfg: :class:`data_prep.config.ProbeConfig`.

    Returns:
        ``(reason, message)`` for the first failed filter, else ``None``.
    """
    if cfg.require_audio and not result.has_audio:
        return NO_AUDIO, "no audio stream"
    if not cfg.min_fps <= result.fps <= cfg.max_fps:
        return FPS_OUT_OF_RANGE, f"{result.fps:.3f} fps outside [{cfg.min_fps}, {cfg.max_fps}]"
    if result.bitrate_kbps < cfg.min_bitrate_kbps:
        return LOW_BITRATE, f"{result.bitrate_kbps:.0f} kbps < {cfg.min_bitrate_kbps:.0f} kbps"
    if result.num_frames < cfg.min_frames:
        return TOO_FEW_FRAMES, f"{result.num_frames} frames < {cfg.min_frames}"
    return None
