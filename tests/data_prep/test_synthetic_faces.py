"""The synthetic corpus's rendered faces: found by face detectors where their boxes say, posable, lit and
photographed like a camera would, across skin tones, ages and hair."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_prep.synthetic.camera import Camera
from data_prep.synthetic.clips import generate_clip
from data_prep.synthetic.face import FaceRenderer
from data_prep.synthetic.identity import HAIR_BOB, HAIR_LONG, HAIR_SHORT, sample_identity


# --- helpers -----------------------------------------------------------------------------------------
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


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


# --- faces and their boxes ---------------------------------------------------------------------------
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
