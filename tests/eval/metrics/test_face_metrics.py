"""ΔP, head pose, landmark distances, mouth closure in silence, SyncNet wrapper, the metric suite."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from data_prep.models import syncnet as sn
from data_prep.models.syncnet_scoring import audio_mfcc
from eval.metrics import MetricSuite, MetricWeights, landmarks, mouth, pose, sync

# --------------------------------------------------------------------------------------------------- ΔP


def test_delta_p_hand_computed():
    poses = np.array([[0.0, 0.0, 0.0], [3.0, -3.0, 0.0], [3.0, 0.0, 6.0], [0.0, 0.0, 6.0]])
    # pairs: (3+3+0)/3 = 2, (0+3+6)/3 = 3, (3+0+0)/3 = 1 → mean 2
    assert pose.delta_p(poses) == pytest.approx(2.0)
    gap = np.vstack([poses[:2], [[np.nan] * 3], poses[2:]])  # pairs touching the NaN row are dropped
    # remaining pairs: 2 (frames 0-1) and 1 (frames 3-4)
    assert pose.delta_p(gap) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="at least 2 frames"):
        pose.delta_p(poses[:1])
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        pose.delta_p(poses[:, :2])


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (15.0, -8.0, 4.0), (-25.0, 10.0, -12.0)])
def test_head_pose_recovers_known_rotation(angles):
    h, w = 480, 640
    k = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]])
    r = pose.rotation_from_euler(*angles)
    cam = pose.MODEL_POINTS @ r.T + [30.0, -20.0, 2500.0]
    proj = (k @ cam.T).T
    lm = np.full((1, 468, 2), np.nan)
    lm[0, list(pose.POSE_LANDMARKS)] = proj[:, :2] / proj[:, 2:]
    np.testing.assert_allclose(pose.head_pose(lm, (h, w))[0], angles, atol=1e-3)
    assert np.isnan(pose.head_pose(np.full((1, 468, 2), np.nan), (h, w))).all()


def test_euler_round_trip():
    for a in [(10.0, 20.0, 30.0), (-40.0, 5.0, -60.0)]:
        np.testing.assert_allclose(pose.euler_from_rotation(pose.rotation_from_euler(*a)), a, atol=1e-9)


# -------------------------------------------------------------------------------------------------- LMD


def test_landmark_distance_closed_form():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 500, (3, 468, 2))
    gen = ref + [3.0, 4.0]  # every landmark 5 px away in a 512×512 frame → 2.5 px at 256
    d = landmarks.landmark_distance(gen, ref, landmarks.FACE_INDICES, (512, 512), (512, 512))
    assert d.value == pytest.approx(2.5) and d.frames_used == 3
    gen2 = ref.copy()
    gen2[:, list(landmarks.MOUTH_INDICES)] += [0.0, 2.0]
    gen2[1] = np.nan  # no face in frame 1
    m = landmarks.landmark_distance(gen2, ref, landmarks.MOUTH_INDICES, (256, 512), (256, 512))
    assert m.value == pytest.approx(2.0) and (m.frames_used, m.frames_total) == (2, 3)
    assert len(landmarks.MOUTH_INDICES) == 40
    with pytest.raises(ValueError, match="no frame has a face"):
        landmarks.landmark_distance(np.full_like(ref, np.nan), ref, landmarks.FACE_INDICES, (1, 1), (1, 1))


# ------------------------------------------------------------------------------------------ mouth/silence


def synthetic_landmarks(openings: list[float]) -> np.ndarray:
    lm = np.zeros((len(openings), 468, 2))
    lm[:, mouth.FOREHEAD] = [100, 0]
    lm[:, mouth.CHIN] = [100, 200]  # face height 200
    lm[:, mouth.UPPER_INNER_LIP] = [100, 150]
    lm[:, mouth.LOWER_INNER_LIP, 0] = 100
    lm[:, mouth.LOWER_INNER_LIP, 1] = 150 + 200 * np.asarray(openings)
    return lm


def test_mouth_closure_in_silence():
    sr, fps = 16000, 25
    loud = 0.3 * np.sin(2 * np.pi * 200 * np.arange(640) / sr)
    quiet = np.zeros(640)
    audio = np.concatenate([loud, quiet, quiet, loud, quiet, quiet])  # frames 1, 2, 4, 5 silent
    openings = [0.08, 0.01, 0.05, 0.09, 0.0, 0.015]
    lm = synthetic_landmarks(openings)
    np.testing.assert_allclose(mouth.mouth_opening(lm), openings)
    level = mouth.frame_rms_dbfs(audio, sr, fps, 6)
    assert level[0] == pytest.approx(20 * math.log10(0.3 / math.sqrt(2)), abs=0.01) and level[1] == -math.inf
    # silent frames 1, 2, 4, 5 → closed 1, 4, 5 → 3/4
    assert mouth.mouth_closure_in_silence(lm, audio, sr, fps) == pytest.approx(0.75)
    assert mouth.mouth_closure_in_silence(lm, audio, sr, fps, closed_below=0.06) == 1.0
    assert mouth.mouth_closure_in_silence(lm[:1], loud, sr, fps) is None  # no silent frame
    int16 = np.round(audio * 32767).astype(np.int16)
    assert mouth.mouth_closure_in_silence(lm, int16, sr, fps) == pytest.approx(0.75)


# ------------------------------------------------------------------------------------------------ Sync


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory):
    """A randomly initialised SyncNet saved like the official ``syncnet_v2.model``."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "syncnet_v2.model"
    torch.save(sn.SyncNet().state_dict(), path)
    return path


class ShiftedStub:
    """The towers replaced by embeddings that agree when audio window j = video window i − shift (as in
    tests/data_prep/test_syncnet.py): each frame carries its index as pixel value in the crop."""

    def __init__(self, audio: np.ndarray, shift: int, num_windows: int):
        g = torch.Generator().manual_seed(5)
        self.proj = torch.randn(13 * 20, 64, generator=g) / 16
        self.cc = torch.from_numpy(audio_mfcc(audio))
        self.shift, self.num_windows = shift, num_windows
        self.outside = torch.randn(256, 64, generator=g)

    def aud(self, x):
        return x.flatten(1) @ self.proj

    def lip(self, x):
        out = []
        for idx in x[:, 0, 0, 0, 0].round().long().tolist():
            j = idx - self.shift
            ok = 0 <= j < self.num_windows
            out.append(self.cc[:, 4 * j : 4 * j + 20].reshape(-1) @ self.proj if ok else self.outside[idx])
        return torch.stack(out)


@pytest.mark.parametrize("shift", [-4, 0, 3])
def test_sync_wrapper_recovers_known_shift(syncnet_file, monkeypatch, shift):
    model = sync.load_syncnet(syncnet_file)
    n = 40
    frames = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 160, 160, 3)).copy()
    boxes = np.tile([60.0, 40.0, 100.0, 80.0], (n, 1))  # fixed box, crop inside the frame: crop i is uniformly i
    audio = (0.3 * np.random.default_rng(7).standard_normal(n * 640)).astype(np.float32)
    stub = ShiftedStub(audio, shift, n - 5)
    monkeypatch.setattr(model, "forward_aud", stub.aud)
    monkeypatch.setattr(model, "forward_lip", stub.lip)
    s = sync.sync_scores(model, frames, audio, fps=25.0, boxes=boxes)
    assert s.offset_frames == shift and s.confidence > 0
    assert s.min_dist == pytest.approx(float(s.mean_dists[15 - shift]))


def test_resampling():
    frames = np.arange(30)
    # The project's rule (data_prep.frame_rate): the source frame nearest each 40 ms tick.
    np.testing.assert_array_equal(sync.resample_frames(frames, 30.0), np.r_[0:3, 4:9, 10:15, 16:21, 22:27, 28:30])
    assert sync.resample_frames(frames, 25.0) is frames
    a = np.sin(np.arange(48000) / 48000 * 2 * np.pi * 100).astype(np.float32)
    out = sync.resample_audio(a, 48000)
    assert out.shape == (16000,)
    expected = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 100)
    np.testing.assert_allclose(out[32:-32], expected[32:-32], atol=1e-3)  # the filter sees silence past the ends


def test_syncnet_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"syncnet_v2\.model"):
        sync.load_syncnet(tmp_path / "syncnet_v2.model")


# ----------------------------------------------------------------------------------------- MetricSuite


def test_metric_suite_skips_absent_weights_with_reasons(tmp_path):
    v = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    weights = MetricWeights(syncnet=tmp_path / "syncnet_v2.model")  # configured but absent; others unset
    out = MetricSuite(weights)(v, v, np.zeros(6 * 640, np.float32), 25.0)
    assert out["psnr"] == math.inf and out["ssim"] == pytest.approx(1.0)
    for name in ("lpips", "fid", "fvd", "csim", "face_sim", "sync_c", "sync_d", "av_offset"):
        assert out[name] is None and name in out.skipped
    assert "TALKDIT_LPIPS_ALEXNET" in out.skipped["lpips"]
    assert str(tmp_path / "syncnet_v2.model") in out.skipped["sync_c"]
    # Noise has no face: the landmark metrics are skipped with that reason, not guessed.
    assert out["m_lmd"] is None and "face" in out.skipped["m_lmd"]
    assert set(out) >= {"psnr", "delta_p", "mouth_closed_silence"}


def test_metric_weights_from_env():
    w = MetricWeights.from_env({"TALKDIT_I3D": "/m/i3d_torchscript.pt", "TALKDIT_ARCFACE": ""})
    assert str(w.i3d) == "/m/i3d_torchscript.pt" and w.arcface is None and w.syncnet is None


# ------------------------------------------------------------------------------------------- real media


def read_frames(path, count: int, long_side: int = 480) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, f = cap.read()
        if not ok:
            break
        h, w = f.shape[:2]
        s = long_side / max(h, w)
        frames.append(cv2.resize(f, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)[:, :, ::-1])
    cap.release()
    return np.stack(frames)


@pytest.mark.slow
@pytest.mark.real_data
def test_real_video_landmarks_pose_and_metrics(real_data_dir, tmp_path):
    import soundfile as sf

    video = real_data_dir / "demo1_video.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    frames = read_frames(video, 50)
    lm = landmarks.face_landmarks(frames)
    assert np.isfinite(lm).all(), "every frame of the talking-head recording should have a face"
    h, w = frames.shape[1:3]
    assert (lm[..., 0] >= 0).all() and (lm[..., 0] <= w).all() and (lm[..., 1] <= h).all()
    poses = pose.head_pose(lm, (h, w))
    assert np.isfinite(poses).all() and np.abs(poses).max() < 60  # a roughly frontal speaker
    dp = pose.delta_p(poses)
    assert 0 < dp < 10
    opening = mouth.mouth_opening(lm)
    assert np.nanmin(opening) >= 0 and np.nanmax(opening) < 0.3

    audio, sr = sf.read(real_data_dir / "demo1_audio.wav", dtype="float32")
    shifted = np.roll(frames, 2, axis=1)  # a 2-pixel vertical shift of the whole video
    out = MetricSuite(MetricWeights())(shifted, frames, audio[: 50 * 640], 25.0, sample_rate=sr)
    assert out["delta_p"] == pytest.approx(pose.delta_p(pose.head_pose(landmarks.face_landmarks(shifted), (h, w))))
    assert 0 < out["m_lmd"] < 5 and 0 < out["f_lmd"] < 5  # ≈ 2 px · 256 / H, plus tracker noise
    assert 0 < out["ssim"] < 1 and math.isfinite(out["psnr"])
    assert "mouth_closed_silence" in out
