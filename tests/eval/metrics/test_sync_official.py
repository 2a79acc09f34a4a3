"""The official sync protocol: the official face tracker's rules and the file pipeline end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_prep.media import write_mp4
from data_prep.models.syncnet import SyncNet
from eval.metrics import sync_official
from eval.metrics.face_tracks import Detection, track_shot


def face(frame: int, x: float, size: float = 150.0) -> Detection:
    return Detection(frame, (x, 100.0, x + size, 100.0 + size), 0.99)


def shot(num_frames: int, *tracks) -> list[list[Detection]]:
    """Per-frame detection lists; each track is ``frame -> Detection | None``."""
    return [[d for t in tracks if (d := t(f)) is not None] for f in range(num_frames)]


def test_a_steady_face_is_one_interpolated_track():
    dets = shot(150, lambda f: None if 40 <= f < 50 else face(f, 100.0 + f))  # a 10-frame miss
    (track,) = track_shot(dets)
    np.testing.assert_array_equal(track.frames, np.arange(150))
    np.testing.assert_allclose(track.boxes[:, 0], 100.0 + np.arange(150))  # the gap is interpolated linearly
    assert all(not faces for faces in dets)  # consumed


def test_gaps_jumps_length_and_size_end_or_drop_tracks():
    # A gap of 30 frames (> num_failed_det = 25) splits the face; neither piece has more than 100 detections.
    assert track_shot(shot(160, lambda f: None if 70 <= f < 100 else face(f, 100.0))) == []
    halves = track_shot(shot(160, lambda f: None if 70 <= f < 100 else face(f, 100.0)), min_track=50)
    assert [(t.frames[0], t.frames[-1]) for t in halves] == [(0, 69), (100, 159)]
    # A jump (IoU 0 with the previous box) ends the track too.
    jumped = track_shot(shot(150, lambda f: face(f, 100.0 if f < 60 else 400.0)), min_track=50)
    assert [(t.frames[0], t.frames[-1]) for t in jumped] == [(0, 59), (60, 149)]
    # Exactly min_track detections is not enough ("more than"); a 100 px face is not larger than 100 px.
    assert track_shot(shot(100, lambda f: face(f, 100.0))) == []
    assert len(track_shot(shot(101, lambda f: face(f, 100.0)))) == 1
    assert track_shot(shot(150, lambda f: face(f, 100.0, size=100.0))) == []


def test_two_faces_two_tracks_and_the_official_loop_skip():
    left, right = (lambda f: face(f, 50.0)), (lambda f: face(f, 600.0))
    tracks = track_shot(shot(120, left, right))
    assert [t.boxes[0, 0] for t in tracks] == [50.0, 600.0]  # formed in order of the per-frame lists
    # A duplicate of the tracked face right after it in one frame's list: the official loop removes the face it
    # takes from the list it iterates, so it never looks at the duplicate; the duplicate later starts a track of
    # its own, too short to keep. The kept track has one box per frame.
    dets = shot(120, left)
    dets[5].append(Detection(5, (52.0, 100.0, 202.0, 250.0), 0.9))
    (track,) = track_shot(dets)
    np.testing.assert_array_equal(track.frames, np.arange(120))
    assert track.boxes[5, 0] == 50.0


def test_protocol_names():
    assert sync_official.protocol_label("direct") == "direct"
    assert sync_official.protocol_label("official", "/w/sfd_face.pth") == "official"
    assert sync_official.protocol_label("official", None) == "official-mediapipe"
    assert "MediaPipe face detection instead of S3FD" in sync_official.protocol_note("official", None)
    with pytest.raises(ValueError, match="sync_protocol='paper'"):
        sync_official.protocol_label("paper")


@pytest.fixture(scope="module")
def syncnet() -> SyncNet:
    torch.manual_seed(0)
    return SyncNet().eval()


@pytest.fixture(scope="module")
def talking_head(tmp_path_factory):
    from data_prep.synthetic.clips import generate_clip

    clip = generate_clip(3, fps=30.0, num_frames=135, width=320, height=320)  # 4.5 s: 112 frames at 25 fps
    path = tmp_path_factory.mktemp("official") / "talk.mp4"
    write_mp4(path, clip.frames, 30.0, audio=clip.audio, sample_rate=16000)
    return clip, path


@pytest.mark.slow
def test_official_pipeline_scores_a_talking_head_file(syncnet, talking_head):
    clip, path = talking_head
    with sync_official.MediaPipeFaces() as faces:
        result = sync_official.official_sync_scores(syncnet, path, faces, "mediapipe")
    assert result.detector == "mediapipe" and len(result.tracks) == 1
    # ffmpeg -r 25 turns 4.5 s at 30 fps into 112 frames and more (its drop/repeat rule lags, and -async 1
    # keeps the video as long as the AAC track), all of them in the one track.
    (start, end), scores = result.spans[0], result.tracks[0]
    assert start == 0 and 112 <= end <= 118
    # The track's audio is cut to its frames (ffmpeg -ss/-to), so windows = frames - 5 as in the official code.
    assert scores.num_windows == end - start - 5
    assert scores.mean_dists.shape == (31,) and np.isfinite(scores.mean_dists).all()
    assert result.confidence == pytest.approx(scores.confidence) and result.min_dist == scores.min_dist > 0
    # The same frames and audio given as arrays are written as the sample file would be, and score the same.
    again = sync_official.official_sync(
        syncnet, None, frames=clip.frames, audio=clip.audio, fps=30.0, sample_rate=16000
    )
    assert again.spans == result.spans
    np.testing.assert_allclose(again.tracks[0].mean_dists, scores.mean_dists, rtol=1e-6)


@pytest.mark.slow
def test_official_pipeline_errors(syncnet, tmp_path):
    blank = tmp_path / "blank.mp4"
    write_mp4(
        blank, np.full((110, 128, 128, 3), 90, np.uint8), 25.0, audio=np.zeros(110 * 640, np.float32), sample_rate=16000
    )
    with sync_official.MediaPipeFaces() as faces:
        with pytest.raises(ValueError, match=r"blank\.mp4: no face track of more than 100 frames"):
            sync_official.official_sync_scores(syncnet, blank, faces, "mediapipe")
        with pytest.raises(FileNotFoundError, match="missing.mp4: no such video file"):
            sync_official.official_sync_scores(syncnet, tmp_path / "missing.mp4", faces, "mediapipe")
