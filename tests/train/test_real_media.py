"""A real talking-head recording through the shard writer and into training (skips without ../shared)."""

import decord
import mediapipe as mp
import numpy as np
import pytest
import soundfile as sf

from data_prep.samples import ClipArrays, encode_sample, make_clip_id
from data_prep.shard_writer import ShardWriter
from tests.train.conftest import tiny_overrides
from tests.train.shards import TINY_WHISPER
from trainer.checkpoints import read_training_checkpoint
from trainer.model.whisper_features import WhisperFeatureExtractor
from trainer.train import run

FRAMES, WIDTH, HEIGHT = 33, 288, 512  # the 1080x1920 portrait recording at 1/3.75 scale


def detect_boxes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe face box per frame and the lower face below the nose tip (NaN where no face)."""
    faces = np.full((len(frames), 4), np.nan, dtype=np.float32)
    lower = np.full((len(frames), 4), np.nan, dtype=np.float32)
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as det:
        for i, frame in enumerate(frames):
            found = det.process(frame).detections
            if not found:
                continue
            box = found[0].location_data.relative_bounding_box
            x0, y0 = box.xmin * WIDTH, box.ymin * HEIGHT
            x1, y1 = x0 + box.width * WIDTH, y0 + box.height * HEIGHT
            nose_y = found[0].location_data.relative_keypoints[2].y * HEIGHT
            faces[i] = (x0, y0, x1, y1)
            lower[i] = (x0, nose_y, x1, min(HEIGHT, y1 + 0.1 * (y1 - y0)))
    return faces, lower


@pytest.mark.real_data
@pytest.mark.slow
def test_real_recording_becomes_a_shard_and_trains(real_data_dir, tmp_path):
    reader = decord.VideoReader(str(real_data_dir / "demo1_video.mp4"), width=WIDTH, height=HEIGHT, num_threads=1)
    fps = reader.get_avg_fps()
    assert fps == pytest.approx(25.0)
    frames = reader.get_batch(list(range(FRAMES))).asnumpy()
    refs = reader.get_batch([60, 120]).asnumpy()  # 2.4 s and 4.8 s: outside the clip, within ±5 s
    faces, lower = detect_boxes(frames)
    assert np.isfinite(faces).all(axis=1).mean() >= 0.95
    ref_faces, ref_lower = detect_boxes(refs)
    audio, sr = sf.read(str(real_data_dir / "demo1_audio.wav"), dtype="float32")
    assert sr == 16000
    clip_audio = audio[: round(FRAMES / fps * sr)]
    whisper = WhisperFeatureExtractor(TINY_WHISPER).encode(clip_audio).numpy()
    clip = ClipArrays(
        clip_id=make_clip_id("demo1", 0, FRAMES, "test"),
        source=str(real_data_dir / "demo1_video.mp4"),
        span=(0, FRAMES),
        fps=fps,
        frames=frames,
        audio=clip_audio,
        sample_rate=sr,
        whisper=whisper,
        face_boxes=faces,
        lower_face_boxes=lower,
        ref_frames=refs,
        ref_lower_face_boxes=ref_lower,
    )
    with ShardWriter(tmp_path / "shards") as writer:
        writer.write(encode_sample(clip))
    overrides = tiny_overrides(f"{tmp_path}/shards/*.tar", tmp_path / "run", 2)
    overrides = [o for o in overrides if not o.startswith(("data.max_frames", "data.tokens", "data.m"))]
    mp = HEIGHT * WIDTH / 1e6  # one clip of 33 frames at 288x512 per batch: 5 latent frames x 9x16 tokens
    overrides += [
        f"data.max_frames={FRAMES}",
        "data.tokens_per_batch=720",
        f"data.min_megapixels={mp}",
        f"data.max_megapixels={mp}",
    ]
    result = run(overrides)
    assert read_training_checkpoint(result.last_checkpoint)["global_step"] == 2
    assert result.final_loss is not None and np.isfinite(result.final_loss)
