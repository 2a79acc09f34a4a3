"""Synthetic talking-head clips (frames + speech + boxes) and their encoding to mp4/wav."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from data_prep.media import write_mp4, write_wav
from data_prep.synthetic.face import FaceRenderer
from data_prep.synthetic.motion import blinks, head_pose
from data_prep.synthetic.speech import SpeechTrack, synthesize_speech


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
        mouth_centers: float32 [F, 2] (x, y) pixels of the middle of the mouth.
    """

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float
    face_boxes: np.ndarray
    lower_face_boxes: np.ndarray
    mouth_open: np.ndarray
    seed: int
    mouth_centers: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        """Number of video frames."""
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of the clip in seconds (num_frames / fps)."""
        return self.num_frames / self.fps


@dataclasses.dataclass(frozen=True, eq=False)
class ClipPlan:
    """Everything a seed fixes about a clip before a pixel is drawn.

    Attributes:
        seed: the clip's seed.
        fps: frames per second.
        width: frame width in pixels.
        height: frame height in pixels.
        zoom: camera zoom (:class:`data_prep.synthetic.face.FaceRenderer`).
        face_seed: seed of the person (identity, room, light).
        speech: the utterance and its articulation.
        times: float64 [F] frame times in seconds.
        mouth_open: float32 [F] mouth opening of the utterance at each frame, in [0, 1].
        poses: float32 [F, 3] head (yaw, pitch, roll) in degrees.
        blinks: float32 [F] eye closure in [0, 1].
    """

    seed: int
    fps: float
    width: int
    height: int
    zoom: float
    face_seed: int
    speech: SpeechTrack
    times: np.ndarray
    mouth_open: np.ndarray
    poses: np.ndarray
    blinks: np.ndarray

    def window(self, start: int, stop: int) -> ClipPlan:
        """The plan of frames ``[start, stop)``; times stay absolute, so gaze and sensor noise match the clip's."""
        if not 0 <= start < stop <= self.times.shape[0]:
            raise ValueError(f"window [{start}, {stop}) outside the clip's {self.times.shape[0]} frames")
        return dataclasses.replace(
            self,
            times=self.times[start:stop],
            mouth_open=self.mouth_open[start:stop],
            poses=self.poses[start:stop],
            blinks=self.blinks[start:stop],
        )

    def audio(self) -> np.ndarray:
        """float32 ``[S]``: the utterance's samples under the plan's frames."""
        rate = self.speech.sample_rate
        first = round(float(self.times[0]) * rate)
        return self.speech.audio[first : first + round(self.times.shape[0] / self.fps * rate)]


def plan_clip(
    seed: int,
    fps: float = 25.0,
    num_frames: int = 121,
    width: int = 256,
    height: int = 256,
    sample_rate: int = 16000,
    zoom: float = 1.0,
) -> ClipPlan:
    """The person, utterance, head motion and blinks of clip ``seed`` (arguments as :func:`generate_clip`)."""
    if not 0 < fps <= 240:
        raise ValueError(f"fps must be in (0, 240], got {fps}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    rng = np.random.default_rng(seed)
    speech_seed, face_seed = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
    speech = synthesize_speech(num_frames / fps, sample_rate=sample_rate, seed=speech_seed)
    times = np.arange(num_frames, dtype=np.float64) / fps
    mouth = speech.mouth_openness(times).astype(np.float32)
    # The head nods with the clip's own speech; a dub keeps this motion and changes only the mouth.
    poses = head_pose(rng, times, mouth)
    closure = blinks(rng, times)
    return ClipPlan(
        seed=int(seed),
        fps=float(fps),
        width=int(width),
        height=int(height),
        zoom=float(zoom),
        face_seed=face_seed,
        speech=speech,
        times=times,
        mouth_open=mouth,
        poses=poses,
        blinks=closure,
    )


def render_clip(plan: ClipPlan, mouth_open: np.ndarray | None = None, audio: np.ndarray | None = None) -> SyntheticClip:
    """Render a planned clip, optionally with another mouth track and soundtrack.

    Args:
        plan: what the clip shows (:func:`plan_clip`).
        mouth_open: float [F] mouth opening per frame replacing the plan's own (a dub); ``None`` keeps it.
        audio: float32 [S] waveform that goes with ``mouth_open``; ``None`` keeps the plan's utterance
            (:meth:`ClipPlan.audio`).

    Returns:
        The clip; its ``mouth_open`` is the track the frames were rendered with.
    """
    num_frames = plan.times.shape[0]
    mouth = plan.mouth_open if mouth_open is None else np.asarray(mouth_open, np.float32)
    if mouth.shape != (num_frames,):
        raise ValueError(f"mouth_open must have one value per frame ({num_frames}), got shape {mouth.shape}")
    renderer = FaceRenderer(plan.width, plan.height, plan.face_seed, zoom=plan.zoom)
    frames = np.empty((num_frames, plan.height, plan.width, 3), np.uint8)
    face_boxes = np.empty((num_frames, 4), np.float32)
    lower_boxes = np.empty((num_frames, 4), np.float32)
    mouth_centers = np.empty((num_frames, 2), np.float32)
    for i in range(num_frames):
        yaw, pitch, roll = (float(a) for a in plan.poses[i])
        frame = renderer.render(float(mouth[i]), yaw, pitch, roll, float(plan.blinks[i]), float(plan.times[i]))
        frames[i] = frame.image
        face_boxes[i] = frame.face_box
        lower_boxes[i] = frame.lower_face_box
        mouth_centers[i] = frame.mouth_center
    return SyntheticClip(
        frames=frames,
        audio=plan.audio() if audio is None else audio,
        sample_rate=plan.speech.sample_rate,
        fps=plan.fps,
        face_boxes=face_boxes,
        lower_face_boxes=lower_boxes,
        mouth_open=mouth,
        seed=plan.seed,
        mouth_centers=mouth_centers,
    )


def generate_clip(
    seed: int,
    fps: float = 25.0,
    num_frames: int = 121,
    width: int = 256,
    height: int = 256,
    sample_rate: int = 16000,
    zoom: float = 1.0,
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
        zoom: camera zoom about the frame centre (1: head and shoulders; 1.5: a face-centred crop).

    Returns:
        The clip.
    """
    return render_clip(plan_clip(seed, fps, num_frames, width, height, sample_rate, zoom))


def generate_dub_ground_truth(
    seed: int,
    driving_seed: int,
    fps: float = 25.0,
    num_frames: int = 121,
    width: int = 256,
    height: int = 256,
    sample_rate: int = 16000,
    zoom: float = 1.0,
) -> SyntheticClip:
    """The exact video a perfect dub of clip ``seed`` with the speech of clip ``driving_seed`` would be.

    The person, room, light, head motion, blinks and gaze are clip ``seed``'s; the mouth moves with the
    utterance of clip ``driving_seed`` (of the same length), whose waveform is the clip's audio. Only the
    mouth and jaw change: pixels outside the lower-face boxes of both clips equal ``generate_clip(seed)``.

    Args:
        seed: the clip being dubbed (arguments as :func:`generate_clip`).
        driving_seed: the clip whose speech drives the mouth.
        fps: frame rate.
        num_frames: number of frames.
        width: frame width in pixels.
        height: frame height in pixels.
        sample_rate: audio sample rate in Hz.
        zoom: camera zoom.

    Returns:
        The dubbed clip (audio and ``mouth_open`` of the driving utterance).
    """
    plan = plan_clip(seed, fps, num_frames, width, height, sample_rate, zoom)
    driving = plan_clip(driving_seed, fps, num_frames, width, height, sample_rate, zoom)
    return render_clip(plan, mouth_open=driving.mouth_open, audio=driving.speech.audio)


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
