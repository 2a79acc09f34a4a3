"""Tests of the embedded synthetic corpus: speech, rendered faces, clips, mp4/wav files, corpus, CLI."""

from __future__ import annotations

import json
import wave

import av
import cv2
import numpy as np
import pytest

from data_prep.synthetic import cli
from data_prep.synthetic.camera import Camera
from data_prep.synthetic.clips import generate_clip, generate_dub_ground_truth, plan_clip, render_clip, write_clip
from data_prep.synthetic.corpus import MANIFEST_NAME, generate_corpus, load_manifest
from data_prep.synthetic.face import FaceRenderer
from data_prep.synthetic.identity import HAIR_BOB, HAIR_LONG, HAIR_SHORT, sample_identity
from data_prep.synthetic.speech import synthesize_speech

SR = 16000


# --- helpers -----------------------------------------------------------------------------------------
def _frame_rms(audio: np.ndarray, hop: int) -> np.ndarray:
    n = audio.shape[0] // hop
    return np.sqrt(np.mean(audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))


def _rms_at(audio: np.ndarray, times_s: np.ndarray, window_s: float) -> np.ndarray:
    """RMS of the audio in a window centred on each time."""
    half = max(1, int(round(window_s * SR / 2)))
    centres = np.round(times_s * SR).astype(int)
    power = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    lo = np.clip(centres - half, 0, audio.shape[0])
    hi = np.clip(centres + half, 0, audio.shape[0])
    return np.sqrt((power[hi] - power[lo]) / np.maximum(hi - lo, 1))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _f0_track(audio: np.ndarray) -> np.ndarray:
    """Autocorrelation pitch (Hz) of the loud 40 ms frames."""
    frame, hop = 640, 320
    loud = 0.1 * _frame_rms(audio, hop).max()
    pitches = []
    for start in range(0, audio.shape[0] - frame, hop):
        w = audio[start : start + frame].astype(np.float64)
        if np.sqrt(np.mean(w**2)) < loud:
            continue
        w = w - w.mean()
        ac = np.correlate(w, w, "full")[frame - 1 :]
        lo, hi = SR // 300, SR // 70
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            pitches.append(SR / lag)
    return np.array(pitches)


@pytest.fixture(scope="module")
def detectors():
    mp = pytest.importorskip("mediapipe")
    models = {
        m: mp.solutions.face_detection.FaceDetection(model_selection=m, min_detection_confidence=0.5) for m in (0, 1)
    }
    yield models
    for model in models.values():
        model.close()


def _detect(detector, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(box x0,y0,x1,y1 in pixels, mouth keypoint x,y in pixels) for every detected face."""
    h, w = image.shape[:2]
    found = []
    for det in detector.process(image).detections or []:
        rel = det.location_data.relative_bounding_box
        box = np.array([rel.xmin * w, rel.ymin * h, (rel.xmin + rel.width) * w, (rel.ymin + rel.height) * h])
        mouth = det.location_data.relative_keypoints[3]  # MOUTH_CENTER
        found.append((box, np.array([mouth.x * w, mouth.y * h])))
    return found


# --- speech ------------------------------------------------------------------------------------------
def test_speech_track_format_and_determinism():
    a = synthesize_speech(3.3, sample_rate=SR, seed=5)
    b = synthesize_speech(3.3, sample_rate=SR, seed=5)
    c = synthesize_speech(3.3, sample_rate=SR, seed=6)
    assert a.audio.dtype == np.float32 and a.audio.ndim == 1
    assert a.audio.shape[0] == round(3.3 * SR)
    assert np.abs(a.audio).max() <= 1.0 and np.abs(a.audio).max() > 0.5
    assert np.array_equal(a.audio, b.audio) and a.syllables == b.syllables
    assert not np.array_equal(a.audio, c.audio)
    assert all(0.0 <= s < e <= 3.3 for s, e in a.syllables)


@pytest.mark.parametrize("seed", [0, 7, 12])
def test_speech_is_speech_like(seed):
    audio = synthesize_speech(8.0, sample_rate=SR, seed=seed).audio

    # Energy envelope (10 ms frames) is modulated at syllable rates: a large share of its modulation
    # spectrum lies in 2-8 Hz.
    env = _frame_rms(audio, SR // 100)
    spectrum = np.abs(np.fft.rfft((env - env.mean()) * np.hanning(env.shape[0]))) ** 2
    freqs = np.fft.rfftfreq(env.shape[0], 0.01)
    syllabic = spectrum[(freqs >= 2) & (freqs <= 8)].sum() / spectrum[(freqs >= 0.25) & (freqs <= 30)].sum()
    assert syllabic > 0.25

    # Pauses: quiet 20 ms frames (40 dB below the loudest), including a run of at least 200 ms.
    quiet = 20 * np.log10(_frame_rms(audio, SR // 50) / _frame_rms(audio, SR // 50).max() + 1e-12) < -40
    assert quiet.mean() > 0.05
    edges = np.diff(np.concatenate([[0], quiet.astype(int), [0]]))
    runs = (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)) * 0.02
    assert runs.max() >= 0.2

    # Spectrum: centroid in the range of voiced speech, and no single dominant frequency (not a tone).
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    fr = np.fft.rfftfreq(audio.shape[0], 1.0 / SR)
    centroid = (power * fr).sum() / power.sum()
    assert 300 < centroid < 3000
    assert power.max() / power.sum() < 0.05
    assert power[fr > 2000].sum() / power.sum() > 0.005  # consonant noise and upper formants exist

    # Voice pitch: a plausible, moving F0.
    f0 = _f0_track(audio)
    assert f0.shape[0] > 50
    assert 80 < np.median(f0) < 250
    assert np.percentile(f0, 90) / np.percentile(f0, 10) > 1.08


def test_mouth_openness_follows_syllables():
    track = synthesize_speech(6.0, sample_rate=SR, seed=3)
    times = np.linspace(0, 6.0, 3001)
    openness = track.mouth_openness(times)
    assert openness.min() >= 0.0 and openness.max() <= 1.0
    spans = np.array(track.syllables)
    far = np.all((times[:, None] < spans[None, :, 0] - 0.1) | (times[:, None] > spans[None, :, 1] + 0.1), axis=1)
    assert far.sum() > 100  # there are pauses
    assert openness[far].max() < 0.05
    mids = 0.5 * (track.nuclei[:, 0] + track.nuclei[:, 1])
    assert np.median(track.mouth_openness(mids)) > 0.2


@pytest.mark.parametrize("fps", [24.0, 25.0, 30.0, 60.0])
def test_mouth_opening_correlates_with_audio_energy(fps):
    clip = generate_clip(21, fps=fps, num_frames=int(round(6 * fps)), width=64, height=64)
    times = np.arange(clip.num_frames) / fps
    energy = _rms_at(clip.audio, times, 1.0 / fps)
    r = np.corrcoef(clip.mouth_open, energy)[0, 1]
    assert r > 0.5, f"Pearson r = {r:.3f} at {fps} fps"
    assert clip.audio.shape[0] == round(clip.num_frames / fps * SR)


# --- clips -------------------------------------------------------------------------------------------
def test_clip_determinism():
    a = generate_clip(7, fps=25.0, num_frames=9, width=96, height=96)
    b = generate_clip(7, fps=25.0, num_frames=9, width=96, height=96)
    c = generate_clip(8, fps=25.0, num_frames=9, width=96, height=96)
    assert a.frames.dtype == np.uint8 and a.frames.shape == (9, 96, 96, 3)
    assert a.face_boxes.dtype == np.float32 and a.face_boxes.shape == (9, 4)
    assert a.lower_face_boxes.shape == (9, 4) and a.mouth_open.shape == (9,)
    for field in ("frames", "audio", "face_boxes", "lower_face_boxes", "mouth_open"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert np.mean(a.frames != c.frames) > 0.3
    assert not np.array_equal(a.audio, c.audio)


@pytest.mark.parametrize(("seed", "size"), [(5, 128), (5, 192), (5, 320), (17, 128), (17, 192), (17, 320)])
def test_mediapipe_detects_one_face_matching_face_box(detectors, seed, size):
    clip = generate_clip(seed, fps=25.0, num_frames=40, width=size, height=size)
    for model, detector in detectors.items():
        hits = 0
        for image, face_box, lower_box in zip(clip.frames, clip.face_boxes, clip.lower_face_boxes):
            found = _detect(detector, image)
            if len(found) != 1:
                continue
            box, mouth = found[0]
            inside = lower_box[0] <= mouth[0] <= lower_box[2] and lower_box[1] <= mouth[1] <= lower_box[3]
            if _iou(box, face_box) >= 0.5 and inside:
                hits += 1
        rate = hits / clip.num_frames
        assert rate >= 0.95, f"model {model}: {rate:.2f} of frames with one face, IoU >= 0.5, mouth in lower box"


def test_lower_face_box_is_the_mouth_and_jaw_region():
    clip = generate_clip(3, fps=25.0, num_frames=50, width=256, height=256)
    face, lower = clip.face_boxes, clip.lower_face_boxes
    mid = 0.5 * (face[:, 1] + face[:, 3])
    assert np.all(lower[:, 1] >= mid - 1e-3)
    assert np.all(lower[:, 3] <= face[:, 3] + 1e-3)
    assert np.all(lower[:, 0] >= face[:, 0] - 1e-3) and np.all(lower[:, 2] <= face[:, 2] + 1e-3)
    assert np.all(lower[:, 3] - lower[:, 1] > 0.3 * (face[:, 3] - face[:, 1]))

    # What moves when the mouth opens (lips, teeth, jaw, chin) lies inside the lower-face box.
    renderer = FaceRenderer(256, 256, seed=11)
    for yaw, pitch, roll in [(0.0, 0.0, 0.0), (5.0, -3.0, 2.0), (-5.0, 3.0, -2.0)]:
        closed = renderer.render(0.0, yaw, pitch, roll, 0.0, 0.0)
        opened = renderer.render(1.0, yaw, pitch, roll, 0.0, 0.0)
        diff = np.abs(closed.image.astype(int) - opened.image.astype(int)).max(axis=-1) > 40
        ys, xs = np.nonzero(diff)
        assert ys.size > 150  # the mouth visibly opens
        x0, y0, x1, y1 = opened.lower_face_box
        inside = (xs >= x0 - 1) & (xs <= x1 + 1) & (ys >= y0 - 1) & (ys <= y1 + 1)
        assert inside.mean() > 0.9
        mx, my = opened.mouth_center
        assert x0 < mx < x1 and y0 < my < y1


def test_head_motion_moves_boxes_like_the_detected_face(detectors):
    renderer = FaceRenderer(256, 256, seed=4)
    ours, theirs = [], []
    for yaw, pitch, roll in [(-6, 0, 0), (6, 0, 0), (0, -5, 0), (0, 5, 0), (0, 0, -4), (0, 0, 4)]:
        frame = renderer.render(0.2, yaw, pitch, roll, 0.0, 0.0)
        found = _detect(detectors[0], frame.image)
        assert len(found) == 1
        ours.append(0.5 * (frame.face_box[:2] + frame.face_box[2:]))
        theirs.append(0.5 * (found[0][0][:2] + found[0][0][2:]))
    ours, theirs = np.array(ours), np.array(theirs)
    # Pairs of opposite poses: our box moves, and the detector's box moves the same way by a similar amount.
    our_moves = ours[1::2] - ours[::2]
    their_moves = theirs[1::2] - theirs[::2]
    assert np.abs(our_moves).max() > 3.0
    assert np.abs(our_moves - their_moves).max() < 4.0


def test_renderer_output_does_not_depend_on_earlier_frames():
    fresh = FaceRenderer(128, 128, seed=6)
    used = FaceRenderer(128, 128, seed=6)
    used.render(1.0, 4.0, -3.0, 2.0, 1.0, 0.7)  # mouth open, eyes shut, another pose and time
    used.render(0.5, -2.0, 1.0, 0.0, 0.4, 1.9)
    for args in [(0.0, 1.0, 1.0, 0.0, 0.0, 0.3), (0.7, 0.0, 0.0, -1.0, 0.2, 0.3)]:
        assert np.array_equal(fresh.render(*args).image, used.render(*args).image)


# --- photographic look -------------------------------------------------------------------------------
def test_camera_tone_curve_vignette_fringes_and_noise():
    camera = Camera(64, 48, np.random.default_rng(0), exposure=1.0)
    ramp = np.broadcast_to(np.linspace(0.0, 8.0, 2000, dtype=np.float32)[:, None, None], (2000, 1, 3))
    toned = camera.tone(np.ascontiguousarray(ramp))[:, 0, 0].astype(int)
    assert toned[0] == 0 and toned[-1] == 255 and np.all(np.diff(toned) >= 0)
    assert 90 < camera.tone(np.full((1, 1, 3), 0.18, np.float32))[0, 0, 0] < 150  # mid grey stays mid

    assert camera.vignette[24, 32] > 1.15 * camera.vignette[0, 0]
    # A bright vertical line right of centre: red is imaged larger than blue, so it lands further out.
    line = np.zeros((48, 64, 3), np.float32)
    line[:, 58] = 1.0
    lensed = camera.lens(line, 0, 0) / camera.vignette[..., None]
    cols = np.arange(64)
    red, blue = (float((lensed[24, :, c] * cols).sum() / lensed[24, :, c].sum()) for c in (0, 2))
    assert red - blue > 0.3

    dark, bright = np.full((48, 64, 3), 8, np.uint8), np.full((48, 64, 3), 170, np.uint8)
    noisy_dark = camera.add_noise(dark, 0.0).astype(float) - 8
    noisy_bright = camera.add_noise(bright, 0.0).astype(float) - 170
    assert 0.3 < noisy_dark.std() < noisy_bright.std() < 8.0  # shot noise grows with the signal
    assert abs(noisy_bright.mean()) < 0.5
    assert np.array_equal(camera.add_noise(bright, 0.0), camera.add_noise(bright, 0.0))
    assert not np.array_equal(camera.add_noise(bright, 0.0), camera.add_noise(bright, 0.1))


@pytest.mark.parametrize("seed", [3, 9, 21, 36])
def test_faces_are_lit_from_the_side_and_in_focus_against_a_defocused_room(seed):
    renderer = FaceRenderer(256, 256, seed=seed)
    frame = renderer.render(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    # Detail (after smoothing the sensor noise away): sharp face, blurred background corners.
    detail = np.abs(cv2.Laplacian(cv2.GaussianBlur(grey, (0, 0), 1.0), cv2.CV_32F))
    x0, y0, x1, y1 = frame.face_box.astype(int)
    corners = np.concatenate([detail[:40, :40].ravel(), detail[:40, -40:].ravel()])
    assert detail[y0:y1, x0:x1].mean() > 2.5 * corners.mean()
    # Modelling: the cheek towards the key light is clearly brighter than the other one.
    ppu, (ax, ay) = renderer.px_per_unit, renderer.anchor
    cy, half, reach = int(ay + 0.35 * ppu), int(0.12 * ppu), int(0.5 * ppu)
    cheeks = [
        grey[cy - half : cy + half, int(ax) + s * reach - half : int(ax) + s * reach + half].mean() for s in (-1, 1)
    ]
    lit, shadowed = (cheeks[1], cheeks[0]) if renderer.identity.key_light[0] > 0 else (cheeks[0], cheeks[1])
    assert lit > 1.1 * shadowed


def test_identities_cover_skin_tones_ages_and_hair():
    people = [sample_identity(seed) for seed in range(300)]
    lightness = np.array([np.mean(p.skin) for p in people])
    assert lightness.min() < 0.3 and lightness.max() > 0.8  # deep to very light skin
    assert np.histogram(lightness, bins=4, range=(lightness.min(), lightness.max()))[0].min() > 20
    ages = np.array([p.age for p in people])
    assert ages.min() < 0.1 and ages.max() > 0.75
    assert {p.hair_style for p in people} == {HAIR_SHORT, HAIR_BOB, HAIR_LONG}
    assert 0.35 < np.mean([p.masculine for p in people]) < 0.65
    assert np.mean([p.hair_grey > 0.3 for p in people]) > 0.05
    assert np.mean([p.rim_light > 0 for p in people]) > 0.1


# --- files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [24.0, 29.97, 30000 / 1001, 60.0])
def test_write_clip_mp4_and_wav(tmp_path, fps):
    clip = generate_clip(9, fps=fps, num_frames=14, width=96, height=80)
    video, audio = tmp_path / "c.mp4", tmp_path / "c.wav"
    write_clip(clip, video, audio)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert abs(float(stream.average_rate) - fps) < 1e-3
        assert (stream.codec_context.width, stream.codec_context.height) == (96, 80)
        assert stream.codec_context.name == "h264"
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == "aac"
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == clip.frames.shape
    mse = np.mean((decoded.astype(np.float64) - clip.frames) ** 2)
    assert 10 * np.log10(255.0**2 / mse) > 30.0
    with av.open(str(video)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        assert container.streams.audio[0].rate == SR
    assert abs(samples.shape[0] - clip.audio.shape[0]) < 2048  # AAC frames are 1024 samples

    with wave.open(str(audio)) as wav:
        assert wav.getframerate() == SR and wav.getnchannels() == 1 and wav.getsampwidth() == 2
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert pcm.shape[0] == clip.audio.shape[0]
    assert np.abs(pcm / 32767.0 - clip.audio).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("seed", "driving", "size", "zoom"), [(5, 9, 128, 1.5), (21, 4, 128, 1.5), (11, 3, 96, 1.0)])
def test_dub_ground_truth_changes_only_the_mouth_region(seed, driving, size, zoom):
    source = generate_clip(seed, fps=25.0, num_frames=40, width=size, height=size, zoom=zoom)
    dub = generate_dub_ground_truth(seed, driving, fps=25.0, num_frames=40, width=size, height=size, zoom=zoom)
    drive = generate_clip(driving, fps=25.0, num_frames=40, width=size, height=size, zoom=zoom)
    # The dub speaks the driving clip's utterance...
    assert np.array_equal(dub.audio, drive.audio) and np.array_equal(dub.mouth_open, drive.mouth_open)
    assert np.abs(dub.mouth_open - source.mouth_open).max() > 0.3
    # ...and differs from the source only inside the lower-face boxes of the two (exactly, pixel for pixel).
    outside = np.ones(source.frames.shape[:3], bool)
    for boxes in (source.lower_face_boxes, dub.lower_face_boxes):
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            outside[i, max(int(np.floor(y0)), 0) : int(np.ceil(y1)), max(int(np.floor(x0)), 0) : int(np.ceil(x1))] = 0
    assert outside.mean() > 0.6
    assert np.array_equal(dub.frames[outside], source.frames[outside])
    changed = (dub.frames != source.frames).any(axis=-1)
    assert changed.sum() > 0.01 * changed.size  # the mouth really moves differently
    # Same head motion: the face box top (brows) is the source's; its sides follow the jaw by under a pixel.
    assert np.array_equal(dub.face_boxes[:, 1], source.face_boxes[:, 1])
    assert np.abs(dub.face_boxes[:, [0, 2]] - source.face_boxes[:, [0, 2]]).max() < 1.0


def test_a_window_of_a_plan_renders_the_same_frames_and_audio():
    whole = generate_clip(3, fps=25.0, num_frames=20, width=64, height=64)
    part = render_clip(plan_clip(3, fps=25.0, num_frames=20, width=64, height=64).window(5, 15))
    assert np.array_equal(part.frames, whole.frames[5:15])
    assert np.array_equal(part.audio, whole.audio[5 * 640 : 15 * 640])
    with pytest.raises(ValueError, match="window"):
        plan_clip(3, fps=25.0, num_frames=20, width=64, height=64).window(15, 25)


def test_write_clip_rejects_odd_sizes(tmp_path):
    clip = generate_clip(1, num_frames=2, width=65, height=64)
    with pytest.raises(ValueError, match="even"):
        write_clip(clip, tmp_path / "odd.mp4")
    assert list(tmp_path.iterdir()) == []


def test_corpus_is_resumable_and_regenerates_identically(tmp_path):
    kwargs = dict(num_videos=2, seed=3, fps_choices=(25.0, 30.0), duration_s=0.6, width=96, height=96)
    entries = generate_corpus(tmp_path, **kwargs)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(
        [MANIFEST_NAME] + [f"{e.video_id}{ext}" for e in entries for ext in (".mp4", ".wav", ".json")]
    )
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    for record, entry in zip(manifest["videos"], entries):
        assert record["id"] == entry.video_id
        assert record["num_frames"] == round(0.6 * record["fps"]) and record["fps"] in (25.0, 30.0)
        assert (record["width"], record["height"], record["sample_rate"]) == (96, 96, SR)
        assert len(record["face_boxes"]) == len(record["lower_face_boxes"]) == record["num_frames"]
        assert abs(record["duration"] - record["num_frames"] / record["fps"]) < 1e-9
    assert load_manifest(tmp_path) == entries

    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    content = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert generate_corpus(tmp_path, **kwargs) == entries
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps

    victim = entries[1].video_id + ".mp4"
    (tmp_path / victim).unlink()
    assert generate_corpus(tmp_path, **kwargs) == entries
    assert (tmp_path / victim).read_bytes() == content[victim]
    for name, stamp in stamps.items():
        if not name.startswith(entries[1].video_id):
            assert (tmp_path / name).stat().st_mtime_ns == stamp, name


def test_cli_writes_a_corpus_and_rejects_unknown_keys(tmp_path, capsys):
    out = tmp_path / "corpus"
    status = cli.main([f"out_dir={out}", "num_videos=1", "duration_s=0.4", "fps=[24,30]", "width=64", "height=64"])
    assert status == 0
    entries = load_manifest(out)
    assert len(entries) == 1 and entries[0].fps in (24.0, 30.0) and entries[0].width == 64
    assert str(out.resolve()) in capsys.readouterr().out

    assert cli.main([f"out_dir={out}", "num_vidoes=3"]) == 2
    assert "num_vidoes" in capsys.readouterr().err
    assert cli.main(["width=wide"]) == 2
    assert "width" in capsys.readouterr().err
