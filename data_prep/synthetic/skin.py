"""Skin of the face in the canonical frame: reflectance, fine relief (pores, wrinkles) and shininess.

Real skin is never one colour: melanin varies in patches at several scales, blood shows through where the
skin is thin or flushed (cheeks, nose, lids, lips), the beard area of shaved men is greyish-blue, the skin
under the eyes is darker. Pores and fine wrinkles are mostly seen in how they break up the specular sheen.
"""

from __future__ import annotations

import cv2
import numpy as np

from data_prep.synthetic import head_geometry as geo
from data_prep.synthetic.camera import srgb_to_linear
from data_prep.synthetic.face_relief import FaceShape
from data_prep.synthetic.head_geometry import gauss
from data_prep.synthetic.identity import FaceIdentity
from data_prep.synthetic.noise import coverage, smoothstep, value_noise

# How much melanin (brown) darkens each channel relative to red, and the shift that blood (haemoglobin) gives.
_MELANIN = np.array([1.0, 1.2, 1.45], np.float32)
_BLOOD = np.array([0.03, -0.2, -0.13], np.float32)


def pixel_detail(ppu: float) -> float:
    """How much of the skin's sub-millimetre detail a pixel still shows (0..1).

    1 at 100 px per face unit (0.7 mm per pixel, a 512-px frame) or more, falling as the square root of the
    resolution below that.
    """
    return float(np.sqrt(np.clip(ppu / 100.0, 0.0, 1.0)))


def skin_albedo(
    identity: FaceIdentity, u: np.ndarray, v: np.ndarray, face: FaceShape, ppu: float, rng: np.random.Generator
) -> np.ndarray:
    """Linear RGB reflectance of the face skin and lips.

    Args:
        identity: the person.
        u: float32 [H, W] canonical u.
        v: float32 [H, W] canonical v.
        face: the face shape (lip and nostril masks).
        ppu: pixels per face unit.
        rng: texture randomness.

    Returns:
        float32 [H, W, 3] linear reflectance.
    """
    shape = u.shape
    ex = identity.eye_x
    albedo = np.broadcast_to(srgb_to_linear(identity.skin), shape + (3,)).copy()

    # Pigment at several scales, from patches a few centimetres wide down to single pixels. Detail finer
    # than about a millimetre averages out inside a pixel at low resolutions, so it fades with the scale.
    fine = pixel_detail(ppu)
    pigment = (
        0.05 * value_noise(rng, shape, 0.35 * ppu, octaves=2)
        + 0.035 * value_noise(rng, shape, 0.08 * ppu, octaves=2)
        + 0.025 * np.sqrt(fine) * value_noise(rng, shape, max(1.0, 0.02 * ppu), octaves=2)
        + 0.02 * fine * value_noise(rng, shape, 1.0)
    )
    albedo *= np.exp(-pigment[..., None] * _MELANIN)
    blood = 0.35 * value_noise(rng, shape, 0.12 * ppu, octaves=2)

    # Flushed areas: cheeks, nose, chin, the lids; redness is relative so it shows on every skin tone.
    flush = (
        gauss(u, v, 0.52, 0.32, 0.2, 0.15)
        + gauss(u, v, -0.52, 0.32, 0.2, 0.15)
        + 0.8 * gauss(u, v, 0.0, identity.nose_v, 0.12, 0.1)
        + 0.35 * gauss(u, v, 0.0, identity.v_chin - 0.15, 0.2, 0.1)
        + 0.3 * gauss(u, v, 0.0, identity.brow_v + 0.05, 0.12, 0.08)
    )
    redness = identity.blush * flush + 0.12 * blood
    albedo *= 1.0 + redness[..., None] * _BLOOD

    # T-zone slightly lighter and yellower; around the mouth a little darker (more so on dark skin).
    albedo *= (1.0 + 0.04 * gauss(u, v, 0.0, -0.8, 0.5, 0.3))[..., None] * np.array([1.0, 1.0, 0.97], np.float32)
    darkness = 1.0 - float(np.mean(identity.skin))
    perioral = gauss(u, v, 0.0, identity.mouth_v + 0.02, 0.45, 0.2) * (1.0 - face.upper_lip - face.lower_lip)
    albedo *= (1.0 - 0.12 * darkness * perioral)[..., None]

    for side in (-1.0, 1.0):
        # Under-eye shadows (thin skin over the dark orbicularis and vessels), purplish-brown, worse with age.
        under = gauss(u, v, side * (ex - 0.03), 0.15, 0.15, 0.05)
        albedo *= 1.0 - (0.08 + 0.1 * identity.age) * under[..., None] * np.array([0.75, 1.0, 0.85], np.float32)
        # Upper lid skin: thinner, pinker, a little darker; the crease above it.
        top, _bottom, inside = geo.eye_opening(identity, u, int(side), 0.0)
        lid = coverage(0.03 - np.abs(v - (top - 0.035)), ppu) * coverage(inside - 0.05, ppu / 0.5)
        albedo *= 1.0 - 0.16 * lid[..., None] * np.array([0.8, 1.0, 0.9], np.float32)
        socket = gauss(u, v, side * ex, 0.0, 0.17, 0.08)
        albedo *= 1.0 - 0.1 * socket[..., None] * np.array([0.85, 1.0, 0.95], np.float32)

    if identity.beard_shadow > 0:
        albedo = _stubble(identity, u, v, face, ppu, rng, albedo)
    if identity.freckles > 0:
        spots = _spots(u, v, ppu, rng, count=int(500 * identity.freckles), centre=(0.0, 0.35), spread=(0.55, 0.25))
        albedo *= 1.0 - identity.freckles * spots[..., None] * np.array([0.35, 0.5, 0.6], np.float32)
    moles = _spots(u, v, ppu, rng, count=int(rng.integers(0, 4)), centre=(0.0, 0.4), spread=(0.7, 0.6), size=2.2)
    albedo *= 1.0 - 0.7 * moles[..., None] * np.array([0.75, 0.85, 0.9], np.float32)

    return _lips(identity, u, v, face, ppu, rng, albedo)


def _stubble(
    identity: FaceIdentity,
    u: np.ndarray,
    v: np.ndarray,
    face: FaceShape,
    ppu: float,
    rng: np.random.Generator,
    albedo: np.ndarray,
) -> np.ndarray:
    """Shaved beard: dark follicles in the skin over jaw, chin and upper lip give a greyish-blue cast."""
    au = np.abs(u)
    nose_v, mouth_v = identity.nose_v, identity.mouth_v
    region = (
        smoothstep(0.25, 0.6, au)
        + smoothstep(mouth_v - 0.05, mouth_v + 0.2, v)
        + gauss(u, v, 0, mouth_v - 0.12, 0.3, 0.05)
    ).clip(0, 1)
    # The beard's upper edge runs diagonally across the cheek, soft and irregular.
    edge = smoothstep(nose_v + 0.05, nose_v + 0.35, v + 0.25 * smoothstep(0.3, 0.9, au) - 0.1 * (au < 0.3))
    beard = face.coverage * edge * region * (1.0 - face.upper_lip - face.lower_lip)
    follicles = np.clip(value_noise(rng, u.shape, 1.0) * 0.6 + 0.5, 0.0, 1.0)
    density = identity.beard_shadow * beard * (0.55 + 0.45 * follicles)
    return albedo * (1.0 - 0.45 * density[..., None] * np.array([0.85, 0.8, 0.7], np.float32))


def _spots(
    u: np.ndarray,
    v: np.ndarray,
    ppu: float,
    rng: np.random.Generator,
    count: int,
    centre: tuple[float, float],
    spread: tuple[float, float],
    size: float = 1.0,
) -> np.ndarray:
    """Small round pigment spots (freckles, moles) scattered around a centre.

    Returns:
        float32 [H, W] in [0, 1], the spots' opacity.
    """
    canvas = np.zeros(u.shape, np.float32)
    if count <= 0:
        return canvas
    u0, v0 = float(u[0, 0]), float(v[0, 0])
    pu = rng.normal(centre[0], spread[0], count)
    pv = rng.normal(centre[1], spread[1], count)
    radius = size * rng.uniform(0.006, 0.016, count) * ppu
    strength = rng.uniform(0.25, 1.0, count)
    for x, y, r, s in zip((pu - u0) * ppu, (pv - v0) * ppu, radius, strength):
        cv2.circle(canvas, (int(round(x * 4)), int(round(y * 4))), int(max(1, round(r * 4))), float(s), -1, shift=2)
    return cv2.GaussianBlur(canvas, (0, 0), max(0.5, 0.006 * ppu))


def _lips(
    identity: FaceIdentity,
    u: np.ndarray,
    v: np.ndarray,
    face: FaceShape,
    ppu: float,
    rng: np.random.Generator,
    albedo: np.ndarray,
) -> np.ndarray:
    """Lip colour with vertical lines, darker corners, a soft border; the line between the lips; nostrils."""
    mouth_v = identity.mouth_v
    lip_lin = srgb_to_linear(identity.lip)
    lips = np.clip(face.upper_lip + face.lower_lip, 0.0, 1.0) * face.coverage
    # The vermilion border is sharp in youth and softens with age.
    lips = cv2.GaussianBlur(lips, (0, 0), max(0.4, (0.004 + 0.006 * identity.age) * ppu))
    lines = value_noise(rng, (1, u.shape[1]), max(1.0, 0.012 * ppu))[0]
    grain = 1.0 + (0.07 + 0.05 * identity.age) * np.clip(lines, -2, 2)[None, :] + 0.03 * value_noise(rng, u.shape, 1.0)
    shade = 1.0 - 0.12 * face.upper_lip - 0.25 * (1.0 - face.lip_profile)  # upper lip and corners are darker
    shade += 0.08 * gauss(u, v, 0.0, mouth_v + 0.6 * identity.lower_lip, 0.15, 0.03)  # fuller centre of lower lip
    lip_colour = lip_lin * (grain * shade)[..., None]
    albedo = albedo * (1.0 - lips[..., None]) + lip_colour * lips[..., None]
    # Line between the lips, darkest at the corners; nostrils.
    seam = coverage(0.01 - np.abs(v - mouth_v), ppu) * (face.lip_profile > 0.02)
    corner = sum(gauss(u, v, s * identity.mouth_half_width, mouth_v, 0.03, 0.02) for s in (-1, 1))
    albedo *= (1.0 - 0.6 * np.clip(seam * 0.8 + corner, 0, 1))[..., None]
    albedo *= (1.0 - 0.75 * face.nostrils)[..., None]
    return albedo


def skin_relief(
    identity: FaceIdentity, u: np.ndarray, v: np.ndarray, ppu: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Fine relief of the skin: wrinkles (a height offset) and pores (a slope field for the normals).

    Args:
        identity: the person.
        u: float32 [H, W] canonical u.
        v: float32 [H, W] canonical v.
        ppu: pixels per face unit.
        rng: texture randomness.

    Returns:
        (wrinkles float32 [H, W] face units to add to the height, pores float32 [H, W] zero-mean bumpiness in
        [-1, 1] scaled so that its pixel-to-pixel slope is about one; the caller chooses the strength).
    """
    age = identity.age
    wrinkles = np.zeros(u.shape, np.float32)
    depth = 0.001 + 0.014 * age**1.5
    width = max(0.008, 0.7 / ppu)
    # Forehead lines: a few wavy horizontal grooves above the brows.
    for k in range(int(2 + 3 * age + rng.uniform())):
        line_v = identity.brow_v - 0.17 - 0.11 * k + rng.uniform(-0.02, 0.02)
        wave = 0.015 * np.sin(u * rng.uniform(3, 6) + rng.uniform(0, 6.28))
        span = smoothstep(0.55, 0.3, np.abs(u - rng.uniform(-0.1, 0.1)))
        wrinkles -= depth * rng.uniform(0.5, 1.0) * span * np.exp(-0.5 * ((v - line_v - wave) / width) ** 2)
    # Crow's feet: short lines fanning out from each outer eye corner; a line under each lower lid.
    for side in (-1.0, 1.0):
        corner = (side * (identity.eye_x + identity.eye_half_width + 0.03), 0.02)
        for angle in np.deg2rad(rng.uniform(-35, 35, size=3)):
            end = (corner[0] + side * 0.13 * np.cos(angle), corner[1] + 0.13 * np.sin(angle))
            dist = geo.segment_distance(u, v, corner, end)
            wrinkles -= 0.7 * depth * age * np.exp(-0.5 * (dist / width) ** 2)
        under = np.hypot((u - side * identity.eye_x) / 0.2, (v - 0.04) / 0.13)
        wrinkles -= 0.5 * depth * age * np.exp(-0.5 * ((under - 1.0) / (width * 5)) ** 2) * (v > 0.1)
    pores = np.clip(value_noise(rng, u.shape, 1.0) * 0.5 + 0.3 * value_noise(rng, u.shape, 2.0), -1.0, 1.0)
    return wrinkles, pores.astype(np.float32)


def skin_shine(identity: FaceIdentity, u: np.ndarray, v: np.ndarray, face: FaceShape) -> tuple[np.ndarray, np.ndarray]:
    """Specular strength and gloss of skin and lips.

    Returns:
        (specular float32 [H, W], gloss float32 [H, W]); the oily T-zone and the wet lips shine most.
    """
    t_zone = (
        gauss(u, v, 0.0, -0.65, 0.38, 0.3)
        + gauss(u, v, 0.0, identity.nose_v - 0.1, 0.09, 0.3)
        + 0.6 * gauss(u, v, 0.0, identity.v_chin - 0.15, 0.18, 0.1)
    )
    cheeks = gauss(u, v, 0.5, 0.25, 0.2, 0.15) + gauss(u, v, -0.5, 0.25, 0.2, 0.15)
    lips = np.clip(face.upper_lip + face.lower_lip, 0.0, 1.0)
    specular = 0.35 + 0.4 * np.clip(t_zone, 0, 1) + 0.12 * cheeks
    specular = specular * (1.0 - lips) + lips * (0.6 + 0.5 * face.lower_lip)
    gloss = 0.12 + 0.2 * np.clip(t_zone, 0, 1)
    gloss = gloss * (1.0 - lips) + 0.6 * lips
    return specular.astype(np.float32), gloss.astype(np.float32)
