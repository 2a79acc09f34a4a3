"""Everything behind the head: an out-of-focus room and the neck and shoulders, drawn once per identity."""

from __future__ import annotations

import cv2
import numpy as np

from data_prep.synthetic import head_geometry as geo
from data_prep.synthetic.camera import srgb_to_linear
from data_prep.synthetic.head_geometry import NECK_HALF_WIDTH, gauss, normals_from_height
from data_prep.synthetic.identity import FaceIdentity
from data_prep.synthetic.lighting import Lighting, shade_layers
from data_prep.synthetic.noise import coverage, smoothstep, value_noise

# Top edge of the body (v in face units) against |u|: neck sides, trapezius slope, shoulders, arms.
_N = NECK_HALF_WIDTH
_BODY_TOP = np.array(
    [
        [0.00, 0.55],
        [_N - 0.01, 0.55],
        [_N, 1.2],
        [_N + 0.03, 1.8],
        [_N + 0.16, 2.13],
        [_N + 0.45, 2.37],
        [1.6, 2.56],
        [2.4, 2.76],
        [2.9, 2.94],
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
    room = _room(identity, width, height, light, rng)

    ppu = px_per_unit
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    u = np.broadcast_to((x - anchor[0]) / ppu, (height, width))
    v = np.broadcast_to((y - anchor[1]) / ppu, (height, width))
    au = np.abs(u)
    build = 1.08 if identity.masculine else 0.96  # broader neck and shoulders for men
    top = np.interp(au / build, _BODY_TOP[:, 0], _BODY_TOP[:, 1]).astype(np.float32)
    top = cv2.GaussianBlur(top, (0, 0), max(0.8, 0.08 * ppu))  # round the corners of the outline
    body = coverage(v - top, ppu) * coverage(3.6 - au, ppu)

    # Height field: a cylinder for the neck inside a wider one for the torso, rounded over the shoulders.
    neck_z = 0.35 + 0.5 * np.sqrt(np.clip(1.0 - (u / NECK_HALF_WIDTH) ** 2, 0.0, 1.0))
    torso_z = 1.0 * np.sqrt(np.clip(1.0 - (u / 3.6) ** 2, 0.0, 1.0)) - 0.4
    over_shoulder = np.sqrt(np.clip((v - top) / 0.6, 0.0, 1.0))
    torso_z = torso_z * (0.3 + 0.7 * over_shoulder)
    # Smooth maximum, so the neck blends into the chest without a crease.
    k = 0.08
    z = k * np.logaddexp(neck_z / k, torso_z / k)
    z = z + _neck_relief(identity, u, v)
    z = np.where(body > 0, z, -0.5).astype(np.float32)
    normal = normals_from_height(cv2.GaussianBlur(z, (0, 0), max(0.7, 0.03 * ppu)), ppu)

    # Neckline: skin above it, clothing below. Crew necks are a shallow curve; V necks a wedge.
    if identity.v_neck:
        neckline = 2.25 + 0.7 * np.clip(1.0 - au / 0.75, 0.0, 1.0)
    else:
        neckline = 2.33 + 0.2 * np.sqrt(np.clip(1.0 - (u / 0.9) ** 2, 0.0, 1.0))
    skin_region = coverage(neckline - v, ppu) * coverage(0.95 - au, ppu)
    skin_lin = srgb_to_linear(identity.skin) * np.array([0.92, 0.9, 0.9], np.float32)
    pigment = 0.04 * value_noise(rng, (height, width), 0.3 * ppu, octaves=3)
    skin_albedo = skin_lin * np.exp(-pigment[..., None] * np.array([1.0, 1.2, 1.4], np.float32))
    cloth = _fabric(identity, u, v, neckline, ppu, rng)
    albedo = skin_albedo * skin_region[..., None] + cloth * (1.0 - skin_region[..., None])
    # The throat under the jaw is in the head's shadow most of the time; the fabric's edge shades the skin.
    under_jaw = smoothstep(identity.v_chin + 0.55, identity.v_chin - 0.1, v) * (au < NECK_HALF_WIDTH + 0.05)
    hem_shadow = np.exp(-0.5 * ((v - neckline + 0.015) / 0.02) ** 2) * skin_region
    occlusion = (1.0 - 0.6 * under_jaw) * (1.0 - 0.3 * hem_shadow)
    occlusion *= 1.0 - 0.25 * smoothstep(NECK_HALF_WIDTH - 0.25, NECK_HALF_WIDTH, au) * (v < top + 0.8)

    layers = np.zeros((height, width, geo.NUM_CHANNELS), np.float32)
    layers[..., geo.ALBEDO] = albedo
    layers[..., geo.SPECULAR] = 0.35 * skin_region + 0.06
    layers[..., geo.GLOSS] = 0.1
    layers[..., geo.SUBSURFACE] = skin_region
    layers[..., geo.OCCLUSION] = occlusion
    layers[..., geo.KEY_SHADOW] = 1.0
    body_radiance = shade_layers(layers, normal, light, 0.04 * ppu)
    # The body is a little nearer than the face and already slightly out of focus.
    body_radiance = cv2.GaussianBlur(body_radiance, (0, 0), max(0.3, 0.004 * min(width, height)))
    radiance = room * (1.0 - body[..., None]) + body_radiance * body[..., None]
    return radiance.astype(np.float32), body.astype(np.float32)


def _neck_relief(identity: FaceIdentity, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Neck muscles (sternocleidomastoids) converging on the notch above the breastbone, and an Adam's apple."""
    relief = np.zeros(u.shape, np.float32)
    notch_v = 2.33
    for side in (-1.0, 1.0):
        dist = geo.segment_distance(u, v, (side * 0.45, identity.v_chin - 0.1), (side * 0.1, notch_v))
        relief += 0.015 * np.exp(-0.5 * (dist / 0.09) ** 2)
        # Collarbones run out from the notch towards the shoulders.
        bone = geo.segment_distance(u, v, (side * 0.12, notch_v + 0.05), (side * 1.2, notch_v - 0.05))
        relief += 0.012 * np.exp(-0.5 * (bone / 0.05) ** 2)
    relief -= 0.015 * gauss(u, v, 0.0, notch_v - 0.02, 0.08, 0.06)
    if identity.masculine:
        relief += 0.03 * gauss(u, v, 0.0, identity.v_chin + 0.45, 0.06, 0.08)
    return relief


def _fabric(
    identity: FaceIdentity, u: np.ndarray, v: np.ndarray, neckline: np.ndarray, ppu: float, rng: np.random.Generator
) -> np.ndarray:
    """Clothing reflectance: weave, folds and creases, and a hem band along the neckline.

    Returns:
        float32 [H, W, 3] linear RGB.
    """
    shape = u.shape
    base = srgb_to_linear(identity.clothing)
    folds = 0.08 * value_noise(rng, shape, 0.6 * ppu, octaves=2)
    # Creases radiate from the neck towards the shoulders: noise stretched along that direction.
    angle = np.arctan2(v - 1.8, u)
    creases = 0.05 * value_noise(rng, (1, 720), 6.0)[0][((angle + np.pi) / (2 * np.pi) * 719).astype(np.int32)]
    weave = 0.05 * value_noise(rng, shape, 1.0)
    hem = np.exp(-0.5 * ((v - neckline - 0.04) / 0.025) ** 2)
    tone = np.exp(folds + creases * smoothstep(2.3, 2.8, v) + weave - 0.12 * hem)
    return (base * tone[..., None]).astype(np.float32)


def _room(identity: FaceIdentity, width: int, height: int, light: Lighting, rng: np.random.Generator) -> np.ndarray:
    """A defocused interior: a wall lit from the key's side, furniture and lamps rendered as lens bokeh."""
    top, bottom = (srgb_to_linear(c) for c in identity.background)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    room = np.broadcast_to(top * (1.0 - t) + bottom * t, (height, width, 3)).copy()
    size = float(min(width, height))
    # The wall is brighter on the key light's side.
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    room *= 1.0 + 0.35 * np.tanh(1.5 * xs * np.sign(light.key_direction[0]))
    for colour in identity.background_accents:
        c = srgb_to_linear(colour)
        alpha = rng.uniform(0.35, 0.9)
        # Shapes sit mostly to the sides, as things in a room behind a centred speaker do.
        cx = rng.choice([rng.uniform(-0.1, 0.3), rng.uniform(0.7, 1.1)]) * width
        cy = rng.uniform(-0.1, 0.9) * height
        mask = np.zeros((height, width), np.float32)
        if rng.uniform() < 0.5:
            w2, h2 = rng.uniform(0.08, 0.3) * size, rng.uniform(0.1, 0.5) * size
            cv2.rectangle(mask, (int(cx - w2), int(cy - h2)), (int(cx + w2), int(cy + h2)), 1.0, -1)
        else:
            cv2.circle(mask, (int(cx), int(cy)), int(rng.uniform(0.03, 0.12) * size), 1.0, -1)
            c = c * rng.uniform(1.5, 3.0)  # lamps and bright spots
        room = room * (1.0 - alpha * mask[..., None]) + c * (alpha * mask[..., None])
    # Small bright points (lights, reflections) become discs of the lens aperture when defocused.
    for _ in range(int(rng.integers(0, 7))):
        px, py = int(rng.uniform(0.0, 1.0) * width), int(rng.uniform(0.0, 0.7) * height)
        cv2.circle(room, (px, py), max(1, int(0.006 * size)), tuple(float(x) for x in rng.uniform(2.0, 5.0, 3)), -1)
    room = _defocus(room, 0.03 * size)
    room *= (1.0 + 0.04 * value_noise(rng, (height, width), 0.2 * size, octaves=2))[..., None]
    return np.clip(room, 0.0, 8.0).astype(np.float32)


def _defocus(image: np.ndarray, radius: float) -> np.ndarray:
    """Out-of-focus blur of a lens: a disc (the aperture), slightly soft-edged, rather than a Gaussian."""
    r = max(1, int(round(radius)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32)
    disc = np.clip(r + 0.5 - np.hypot(xx, yy), 0.0, 1.0)
    disc /= disc.sum()
    blurred = cv2.filter2D(image, -1, disc, borderType=cv2.BORDER_REFLECT)
    return cv2.GaussianBlur(blurred, (0, 0), max(0.5, 0.15 * radius))
