"""Synthetic talking-head clips (frames + speech + boxes) and their encoding to mp4/wav."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from data_prep.media import write_mp4, write_wav
from data_prep.synthetic.face import FaceRenderer
from data_prep.synthetic.motion import blinks, head_pose
from data_prep.synthetic.speech import synthesize_speech


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticClip:
    """A generated talking-head clip.

    Attributes:
        frames: uint8 [F, H, W, 3] RGB; frame i shows time i / fps.
        audio: float32 [S] mono speech in [-1, 1], S = round(F / fps * sample_rate).
        sample_rate: audio samples per second.
        fps: frames per second.
        face_boxes: float32 [F, 4] (x0, y0, x1, y1) pixels, framed like a face detector's box.
        lower_face_boxes: float32 [F, 4] (x0, y0, x1, y1) pixels, nose base to chin (the V2V mask source).
        mouth_open: float32 [F] mouth opening in [0, 1] at each frame's time.
        seed: the seed the clip was generated from.
    """

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float
    face_boxes: np.ndarray
    lower_face_boxes: np.ndarray
    mouth_open: np.ndarray
    seed: int

    @property
    def num_frames(self) -> int:
        """Number of video frames."""
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of the clip in seconds (num_frames / fps)."""
        return self.num_frames / self.fps


def generate_clip(
    seed: int,
    fps: float = 25.0,
    num_frames: int = 121,
    width: int = 256,
    height: int = 256,
    sample_rate: int = 16000,
) -> SyntheticClip:
    """Generate a clip of one synthetic person speaking.

    The person (face, hair, room, light), the utterance, the head motion and the blinks all follow from
    ``seed``: the same arguments give bit-identical frames and audio.

    Args:
        seed: non-negative integer.
        fps: frame rate, in (0, 240]; any rate works (24, 25, 29.97, 30, 50, 60, ...).
        num_frames: number of frames (>= 1).
        width: frame width in pixels (>= 64).
        height: frame height in pixels (>= 64).
        sample_rate: audio sample rate in Hz.

    Returns:
        The clip.
    """
    if not 0 < fps <= 240:
        raise ValueError(f"fps must be in (0, 240], got {fps}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    rng = np.random.default_rng(seed)
    speech_seed, face_seed = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
    duration_s = num_frames / fps
    speech = synthesize_speech(duration_s, sample_rate=sample_rate, seed=speech_seed)
    times = np.arange(num_frames, dtype=np.float64) / fps
    mouth = speech.mouth_openness(times).astype(np.float32)
    poses = head_pose(rng, times, mouth)
    closure = blinks(rng, times)

    renderer = FaceRenderer(width, height, face_seed)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    face_boxes = np.empty((num_frames, 4), np.float32)
    lower_boxes = np.empty((num_frames, 4), np.float32)
    for i in range(num_frames):
        yaw, pitch, roll = (float(a) for a in poses[i])
        frame = renderer.render(float(mouth[i]), yaw, pitch, roll, float(closure[i]), float(times[i]))
        frames[i] = frame.image
        face_boxes[i] = frame.face_box
        lower_boxes[i] = frame.lower_face_box
    return SyntheticClip(
        frames=frames,
        audio=speech.audio,
        sample_rate=sample_rate,
        fps=float(fps),
        face_boxes=face_boxes,
        lower_face_boxes=lower_boxes,
        mouth_open=mouth,
        seed=int(seed),
    )


def write_clip(
    clip: SyntheticClip, video_path: str | os.PathLike, audio_path: str | os.PathLike | None = None, crf: int = 18
) -> None:
    """Encode a clip as H.264 (yuv420p) + AAC mp4, and optionally the audio as 16-bit PCM wav.

    Both files are written atomically: to a temporary file in the same directory, then renamed.

    Args:
        clip: the clip; its width and height must be even (4:2:0 chroma).
        video_path: destination .mp4 path.
        audio_path: destination .wav path, or None for no wav.
        crf: x264 constant rate factor (0 = lossless .. 51).
    """
    write_mp4(video_path, clip.frames, clip.fps, crf, audio=clip.audio, sample_rate=clip.sample_rate)
    if audio_path is not None:
        write_wav(audio_path, clip.audio, clip.sample_rate)
