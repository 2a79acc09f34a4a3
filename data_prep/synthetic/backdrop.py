"""Everything behind the head: an out-of-focus room and the neck and shoulders, drawn once per identity."""

from __future__ import annotations

import cv2
import numpy as np

from data_prep.synthetic.head_geometry import NECK_HALF_WIDTH, normals_from_height
from data_prep.synthetic.identity import FaceIdentity
from data_prep.synthetic.lighting import Lighting, shade
from data_prep.synthetic.noise import coverage, smoothstep, value_noise

# Top edge of the body (v in face units) against |u|: neck sides, trapezius slope, shoulders, arms.
_N = NECK_HALF_WIDTH
_BODY_TOP = np.array(
    [
        [0.00, 0.55],
        [_N - 0.01, 0.55],
        [_N, 1.2],
        [_N + 0.03, 1.9],
        [_N + 0.16, 2.25],
        [_N + 0.45, 2.48],
        [1.6, 2.66],
        [2.4, 2.84],
        [2.9, 3.0],
        [3.25, 3.35],
        [3.45, 4.2],
        [3.55, 9.0],
    ]
)


def render_backdrop(
    identity: FaceIdentity,
    width: int,
    height: int,
    anchor: tuple[float, float],
    px_per_unit: float,
    light: Lighting,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the room and the body for a frame size.

    Args:
        identity: the person and scene.
        width: frame width in pixels.
        height: frame height in pixels.
        anchor: (x, y) pixel position of the canonical origin (pupil-line centre) at rest.
        px_per_unit: pixels per face unit.
        light: the light rig.
        seed: texture seed.

    Returns:
        (radiance float32 [height, width, 3] linear RGB, body coverage float32 [height, width] in [0, 1]).
    """
    rng = np.random.default_rng([seed, 0xBAC])
    room = _room(identity, width, height, rng)

    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    u = np.broadcast_to((x - anchor[0]) / px_per_unit, (height, width))
    v = np.broadcast_to((y - anchor[1]) / px_per_unit, (height, width))
    au = np.abs(u)
    top = np.interp(au, _BODY_TOP[:, 0], _BODY_TOP[:, 1]).astype(np.float32)
    body = coverage(v - top, px_per_unit) * coverage(3.6 - au, px_per_unit)

    # Height field: a cylinder for the neck inside a wider one for the torso, rounded over the shoulders.
    neck_z = 0.35 + 0.5 * np.sqrt(np.clip(1.0 - (u / NECK_HALF_WIDTH) ** 2, 0.0, 1.0))
    torso_z = 1.0 * np.sqrt(np.clip(1.0 - (u / 3.6) ** 2, 0.0, 1.0)) - 0.4
    over_shoulder = np.sqrt(np.clip((v - top) / 0.6, 0.0, 1.0))
    torso_z = torso_z * (0.3 + 0.7 * over_shoulder)
    # Smooth maximum, so the neck blends into the chest without a crease.
    k = 0.08
    z = k * np.logaddexp(neck_z / k, torso_z / k)
    z = np.where(body > 0, z, -0.5).astype(np.float32)
    normal = normals_from_height(z, px_per_unit)

    # Neckline: skin above it, clothing below. Crew necks are a shallow curve; V necks a wedge.
    if identity.v_neck:
        neckline = 2.35 + 0.75 * np.clip(1.0 - au / 0.75, 0.0, 1.0)
    else:
        neckline = 2.45 + 0.22 * np.sqrt(np.clip(1.0 - (u / 0.9) ** 2, 0.0, 1.0))
    skin_region = coverage(neckline - v, px_per_unit) * coverage(0.95 - au, px_per_unit)
    skin_lin = np.square(np.array(identity.skin, np.float32)) * 0.93
    cloth_lin = np.square(np.array(identity.clothing, np.float32))
    folds = 1.0 + 0.06 * value_noise(rng, (height, width), 0.5 * px_per_unit, octaves=2)
    albedo = skin_lin * skin_region[..., None] + (cloth_lin * folds[..., None]) * (1.0 - skin_region[..., None])
    # The throat under the jaw is in the head's shadow most of the time.
    under_jaw = smoothstep(identity.v_chin + 0.5, identity.v_chin - 0.1, v) * (au < NECK_HALF_WIDTH + 0.05)
    occlusion = (1.0 - 0.55 * under_jaw).astype(np.float32)
    ones = np.ones((height, width), np.float32)
    body_radiance = shade(
        albedo.astype(np.float32),
        normal,
        0.06 * ones,
        skin_region.astype(np.float32),
        occlusion,
        ones,
        light,
    )
    radiance = room * (1.0 - body[..., None]) + body_radiance * body[..., None]
    return radiance.astype(np.float32), body.astype(np.float32)


def _room(identity: FaceIdentity, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A defocused interior: a wall gradient, blurred furniture and lights, a vignette."""
    top, bottom = (np.square(np.array(c, np.float32)) for c in identity.background)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    room = np.broadcast_to(top * (1.0 - t) + bottom * t, (height, width, 3)).copy()
    size = float(min(width, height))
    for colour in identity.background_accents:
        c = np.square(np.array(colour, np.float32))
        alpha = rng.uniform(0.35, 0.9)
        # Shapes sit mostly to the sides, as things in a room behind a centred speaker do.
        cx = rng.choice([rng.uniform(-0.1, 0.3), rng.uniform(0.7, 1.1)]) * width
        cy = rng.uniform(-0.1, 0.9) * height
        if rng.uniform() < 0.5:
            w2, h2 = rng.uniform(0.08, 0.3) * size, rng.uniform(0.1, 0.5) * size
            mask = np.zeros((height, width), np.float32)
            cv2.rectangle(mask, (int(cx - w2), int(cy - h2)), (int(cx + w2), int(cy + h2)), 1.0, -1)
        else:
            mask = np.zeros((height, width), np.float32)
            cv2.circle(mask, (int(cx), int(cy)), int(rng.uniform(0.03, 0.12) * size), 1.0, -1)
            c = c * rng.uniform(1.0, 1.8)  # lamps and bright spots
        room = room * (1.0 - alpha * mask[..., None]) + c * (alpha * mask[..., None])
    room = cv2.GaussianBlur(room, (0, 0), 0.035 * size)
    room *= (1.0 + 0.04 * value_noise(rng, (height, width), 0.2 * size, octaves=2))[..., None]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2
    room *= (1.0 - 0.6 * r2)[..., None]
    return np.clip(room, 0.0, 1.5).astype(np.float32)
