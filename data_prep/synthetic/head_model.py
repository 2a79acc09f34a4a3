"""Static appearance of a synthetic head, drawn once per identity in the canonical (frontal) frame.

The head is a 2.5-D model: a height field over the canonical (u, v) plane plus per-pixel material
layers (channels in ``head_geometry``). The renderer deforms the jaw and eyelids in this frame, warps it
to the head pose and shades it with the normals stored here.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_prep.synthetic import head_geometry as geo
from data_prep.synthetic.hair import hair_layers
from data_prep.synthetic.head_geometry import V_CHEEK, CanonicalGrid, gauss
from data_prep.synthetic.identity import HAIR_SHORT, FaceIdentity
from data_prep.synthetic.noise import coverage, smoothstep, value_noise


@dataclasses.dataclass(frozen=True)
class _Face:
    """The bare face on the canonical grid (float32 [H, W] arrays)."""

    coverage: np.ndarray  # inside the face/skull outline
    height: np.ndarray  # skull plus facial relief, face units
    upper_lip: np.ndarray  # coverage of the upper lip
    lower_lip: np.ndarray  # coverage of the lower lip
    lip_profile: np.ndarray  # 1 mid-mouth .. 0 at the corners
    nostrils: np.ndarray  # coverage of the nostrils


def build_head_layers(identity: FaceIdentity, px_per_unit: float, seed: int) -> tuple[np.ndarray, CanonicalGrid]:
    """Draw the head with closed lips and closed-lid skin over the eyes (the renderer draws eyeballs).

    Args:
        identity: the person.
        px_per_unit: canonical resolution, pixels per face unit.
        seed: texture seed.

    Returns:
        (layers float32 [H, W, NUM_CHANNELS], grid).
    """
    rng = np.random.default_rng([seed, 0x4EAD])
    grid = geo.make_grid(px_per_unit)
    u, v = grid.coords()
    ppu = px_per_unit
    au = np.abs(u)
    half_width = geo.face_half_width(identity, v[:, :1])  # [H, 1]

    face = _face(identity, u, v, half_width, ppu)
    albedo = _skin_albedo(identity, u, v, face, ppu, rng)
    brow_alpha = _eyebrow_alpha(identity, u, v, ppu, rng)
    brow_colour = np.square(np.minimum(np.array(identity.hair, np.float32) * 0.6, 0.3))
    albedo = albedo * (1.0 - brow_alpha[..., None]) + brow_colour * brow_alpha[..., None]

    # Ears stick out from the sides of the head at nose height; bob and long hair cover them.
    ear_v = 0.3
    ear_u = float(geo.face_half_width(identity, np.array(ear_v))) + 0.02
    ear_sd = 0.08 * (1.0 - np.hypot((au - ear_u) / 0.08, (v - ear_v) / 0.3))
    ear = coverage(ear_sd, ppu) * (1.0 - face.coverage) * (identity.hair_style == HAIR_SHORT)
    ear_z = 0.22 + 0.08 * np.clip(ear_sd / 0.09, 0.0, 1.0) ** 0.5
    ear_colour = np.square(np.array(identity.skin, np.float32)) * np.array([0.85, 0.68, 0.64], np.float32)
    ear_fold = 1.0 - 0.35 * coverage(0.04 - np.abs(au - ear_u + 0.01) - 0.3 * np.abs(v - ear_v) ** 2, ppu)
    is_ear = ear > face.coverage
    skin_cov = np.maximum(face.coverage, ear)
    skin_albedo = np.where(is_ear[..., None], ear_colour * ear_fold[..., None], albedo)
    skin_z = np.where(is_ear, ear_z, face.height).astype(np.float32)

    hair = hair_layers(identity, grid, u, v, half_width, rng)
    inside = face.coverage > 0
    hair_z = np.where(inside, face.height + 0.02 + (hair.height - face.height - 0.02) * hair.taper, hair.height)
    hair_z = hair_z.astype(np.float32)
    hair_visible = np.maximum(hair.front, hair.back * (1.0 - skin_cov))
    alpha = 1.0 - (1.0 - skin_cov) * (1.0 - hair_visible)
    albedo = skin_albedo * (1.0 - hair_visible[..., None]) + hair.albedo * hair_visible[..., None]
    height = np.where(alpha > 0, skin_z * (1.0 - hair_visible) + hair_z * hair_visible, 0.0).astype(np.float32)
    # Skin and hair get normals from their own surfaces, so the step at the hairline does not draw a line.
    skin_height = np.where(skin_cov > 0, skin_z, 0.0).astype(np.float32)
    normal = (
        geo.normals_from_height(skin_height, ppu) * (1.0 - hair_visible[..., None])
        + geo.normals_from_height(hair_z, ppu) * hair_visible[..., None]
    )
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-6

    # Oily T-zone and wet lips shine; brows and hair have their own sheen.
    specular = (
        0.08 + 0.1 * gauss(u, v, 0.0, -0.6, 0.4, 0.3) + 0.12 * gauss(u, v, 0.0, identity.nose_v - 0.05, 0.1, 0.15)
    )
    specular = specular + 0.25 * face.lower_lip + 0.12 * face.upper_lip
    specular = specular * (1.0 - brow_alpha) * (1.0 - hair_visible) + hair.specular * hair_visible

    layers = np.zeros((grid.height, grid.width, geo.NUM_CHANNELS), np.float32)
    layers[..., geo.ALBEDO] = np.clip(albedo, 0.0, 1.0)
    layers[..., geo.ALPHA] = alpha
    layers[..., geo.HEIGHT] = height
    layers[..., geo.NORMAL] = normal
    layers[..., geo.SPECULAR] = specular
    layers[..., geo.SUBSURFACE] = skin_cov * (1.0 - hair_visible) * (1.0 - brow_alpha * 0.8)
    layers[..., geo.OCCLUSION] = geo.ambient_occlusion(height, ppu) * (1.0 - 0.25 * hair.back * (1 - hair.front))
    # Only the face casts shadows (nose, brows, lips, chin); hair shadows on the face edge are an artefact
    # of the 2.5-D model, where hanging hair sits higher than the face's silhouette.
    visibility = geo.key_light_visibility(skin_height, ppu, identity.key_light)
    layers[..., geo.KEY_SHADOW] = visibility * (1.0 - hair_visible) + hair_visible
    return layers, grid


def _face(identity: FaceIdentity, u: np.ndarray, v: np.ndarray, half_width: np.ndarray, ppu: float) -> _Face:
    """Outline, height field and lip/nostril masks of the bare face."""
    au = np.abs(u)
    slope = np.gradient(half_width[:, 0], 1.0 / ppu)[:, None]
    face_sd = np.where(half_width > 0, (half_width - au) / np.sqrt(1.0 + slope**2), -1.0)
    face = coverage(face_sd, ppu)

    # Skull: elliptical across, sloping back over the forehead and rounding under the chin.
    top_span = V_CHEEK - identity.v_top + 0.05
    forward = np.where(
        v < V_CHEEK,
        np.sqrt(np.clip(1.0 - ((v - V_CHEEK) / top_span) ** 2, 0.0, 1.0)),
        np.sqrt(np.clip(1.0 - ((v - V_CHEEK) / (identity.v_chin - V_CHEEK + 0.02)) ** 6, 0.0, 1.0)),
    )
    across = np.sqrt(np.clip(1.0 - (u / np.maximum(half_width, 1e-3)) ** 2, 0.0, 1.0))
    z = identity.depth * forward * across

    ex = identity.eye_x
    nose_v, nose_w = identity.nose_v, identity.nose_width
    mouth_v = identity.mouth_v
    upper_top, lower_bottom, lip_profile = geo.lip_outlines(identity, u)

    relief = np.zeros(u.shape, np.float32)
    relief += 0.05 * gauss(u, v, 0.0, identity.brow_v - 0.02, 0.6, 0.09)  # brow ridge
    relief += 0.03 * gauss(u, v, 0.0, -0.75, 0.45, 0.35)  # forehead
    for side in (-1.0, 1.0):
        relief -= 0.13 * gauss(u, v, side * ex, 0.01, 0.2, 0.12)  # eye socket
        relief += 0.035 * gauss(u, v, side * ex, -0.035, 0.17, 0.045)  # upper lid over the eyeball
        relief += 0.07 * gauss(u, v, side * 0.56, 0.27, 0.22, 0.17)  # cheekbone
        relief -= 0.035 * gauss(u, v, side * 0.86, -0.45, 0.12, 0.25)  # temple
        # Nasolabial fold: a groove from the nose wing to beyond the mouth corner, cheek bulging above it.
        fold = geo.segment_distance(
            u, v, (side * (nose_w + 0.03), nose_v + 0.04), (side * (identity.mouth_half_width + 0.08), mouth_v + 0.12)
        )
        relief -= 0.018 * np.exp(-0.5 * (fold / 0.025) ** 2)
        relief += 0.02 * np.exp(-0.5 * (fold / 0.08) ** 2) * (au > nose_w)
        relief += 0.11 * gauss(u, v, side * nose_w * 0.72, nose_v + 0.05, 0.065, 0.055)  # nose wing
        relief += 0.024 * gauss(u, v, side * 0.035, (nose_v + mouth_v) / 2, 0.012, 0.12)  # philtrum ridge
    # Nose: a wedge with flat sides (so one side catches the key light and the other does not) that
    # rises and widens from the bridge to the tip, then a rounded tip.
    along = smoothstep(-0.15, nose_v, v)
    nose_half = 0.08 + 0.14 * along
    tent = np.clip(1.0 - au / nose_half, 0.0, 1.0) ** 1.2
    nose_height = (0.05 + 0.15 * along**1.2) * smoothstep(nose_v + 0.12, nose_v + 0.02, v)
    nose = nose_height * tent * smoothstep(-0.34, -0.14, v)
    relief += cv2.GaussianBlur(nose, (0, 0), max(0.8, 0.035 * ppu))
    relief += 0.05 * gauss(u, v, 0.0, nose_v, 0.08, 0.06)
    relief -= 0.02 * gauss(u, v, 0.0, nose_v + 0.12, 0.06, 0.03)  # under the tip
    # Mouth: the dental arch bulges, the lips sit on it, the chin below.
    relief += 0.07 * gauss(u, v, 0.0, mouth_v, 0.45, 0.24)
    upper_lip = coverage(np.minimum(v - upper_top, mouth_v - v), ppu) * (lip_profile > 0)
    lower_lip = coverage(np.minimum(v - mouth_v, lower_bottom - v), ppu) * (lip_profile > 0)
    upper_round = np.clip((v - upper_top) / np.maximum(mouth_v - upper_top, 1e-3), 0.0, 1.0)
    lower_round = np.clip((v - mouth_v) / np.maximum(lower_bottom - mouth_v, 1e-3), 0.0, 1.0)
    relief += 0.045 * upper_lip * np.sin(np.pi * (0.3 + 0.7 * upper_round)) * lip_profile**0.5
    relief += 0.055 * lower_lip * np.sin(np.pi * (0.15 + 0.85 * lower_round) * 0.9) * lip_profile**0.5
    relief -= 0.03 * gauss(u, v, 0.0, mouth_v + identity.lower_lip + 0.07, 0.22, 0.04)  # mentolabial fold
    relief += 0.06 * gauss(u, v, 0.0, identity.v_chin - 0.17, 0.2, 0.12)  # chin
    relief = cv2.GaussianBlur(relief, (0, 0), max(0.6, 0.01 * ppu))

    nostrils = np.zeros(u.shape, np.float32)
    for side in (-1.0, 1.0):
        shape = np.hypot((u - side * nose_w * 0.45) / 0.05, (v - nose_v - 0.075) / 0.022)
        nostrils = np.maximum(nostrils, coverage(0.022 * (1.0 - shape), ppu))
    height = (z + (relief - 0.02 * nostrils) * face).astype(np.float32)
    return _Face(face, height, upper_lip, lower_lip, lip_profile, nostrils)


def _skin_albedo(
    identity: FaceIdentity, u: np.ndarray, v: np.ndarray, face: _Face, ppu: float, rng: np.random.Generator
) -> np.ndarray:
    """Linear RGB reflectance of the skin and lips: tone, mottling, blush, shadows of the eye area, beard."""
    shape = u.shape
    au = np.abs(u)
    nose_v, mouth_v, ex = identity.nose_v, identity.mouth_v, identity.eye_x
    albedo = np.broadcast_to(np.square(np.array(identity.skin, np.float32)), shape + (3,)).copy()
    mottling = value_noise(rng, shape, 0.25 * ppu, octaves=2)
    pores = value_noise(rng, shape, 1.0, octaves=1)
    albedo *= (1.0 + 0.05 * mottling + 0.03 * pores)[..., None]
    albedo[..., 0] *= 1.0 + 0.03 * mottling
    redness = (
        gauss(u, v, 0.55, 0.35, 0.2, 0.16)
        + gauss(u, v, -0.55, 0.35, 0.2, 0.16)
        + 0.5 * gauss(u, v, 0.0, nose_v, 0.12, 0.09)
    )
    albedo[..., 1] *= 1.0 - 0.16 * identity.blush * redness
    albedo[..., 2] *= 1.0 - 0.12 * identity.blush * redness
    albedo *= (1.0 + 0.05 * gauss(u, v, 0.0, -0.75, 0.5, 0.3))[..., None]  # forehead catches more light
    for side in (-1.0, 1.0):
        under_eye = gauss(u, v, side * (ex - 0.02), 0.12, 0.15, 0.05)
        albedo *= (1.0 - 0.12 * under_eye)[..., None] * np.array([1.0, 0.97, 1.0], np.float32)
        # Upper lid skin is a little darker and pinker; a crease sits above it.
        top, _bottom, inside = geo.eye_opening(identity, u, int(side), 0.0)
        lid = coverage(0.025 - np.abs(v - (top - 0.035)), ppu) * coverage(inside - 0.05, ppu / 0.5)
        albedo *= (1.0 - 0.18 * lid)[..., None]
        socket = gauss(u, v, side * ex, 0.0, 0.16, 0.07)
        albedo *= (1.0 - 0.12 * socket)[..., None] * np.array([1.0, 0.96, 0.97], np.float32)
    if identity.beard_shadow > 0:
        region = (
            smoothstep(0.25, 0.6, au)
            + smoothstep(mouth_v - 0.05, mouth_v + 0.2, v)
            + gauss(u, v, 0, mouth_v - 0.12, 0.3, 0.05)
        ).clip(0, 1)
        beard = face.coverage * smoothstep(nose_v + 0.1, nose_v + 0.35, v) * region
        beard *= 1.0 - face.upper_lip - face.lower_lip
        stubble = 0.7 + 0.3 * np.clip(value_noise(rng, shape, 1.0), -1, 1)
        tint = np.array([0.97, 0.99, 1.0], np.float32) ** beard[..., None]
        albedo *= (1.0 - identity.beard_shadow * 0.35 * beard * stubble)[..., None] * tint
    if identity.freckles > 0:
        spots = np.clip(value_noise(rng, shape, 0.03 * ppu) - 1.8, 0, 1)
        albedo *= (1.0 - identity.freckles * 0.6 * spots * gauss(u, v, 0.0, 0.35, 0.75, 0.3))[..., None]

    lip_lin = np.square(np.array(identity.lip, np.float32))
    lips = np.clip(face.upper_lip + face.lower_lip, 0.0, 1.0) * face.coverage
    lip_lines = 1.0 + 0.06 * np.clip(value_noise(rng, (1, shape[1]), 0.02 * ppu), -2, 2)
    lip_colour = lip_lin * lip_lines[0][:, None] * (1.0 - 0.1 * face.upper_lip)[..., None]
    albedo = albedo * (1.0 - lips[..., None]) + lip_colour * lips[..., None]
    # Line between the lips, darkest at the corners; nostrils.
    seam = coverage(0.012 - np.abs(v - mouth_v), ppu) * (face.lip_profile > 0.02)
    corner = sum(gauss(u, v, s * identity.mouth_half_width, mouth_v, 0.03, 0.02) for s in (-1, 1))
    albedo *= (1.0 - 0.55 * np.clip(seam * 0.8 + corner, 0, 1))[..., None]
    albedo *= (1.0 - 0.6 * face.nostrils)[..., None]
    return albedo


def _eyebrow_alpha(
    identity: FaceIdentity, u: np.ndarray, v: np.ndarray, ppu: float, rng: np.random.Generator
) -> np.ndarray:
    """Coverage of the eyebrows: arched bands, thick at the inner end and tapering outwards, with hair strokes."""
    au = np.abs(u)
    along = np.clip((au - 0.1) / 0.65, 0.0, 1.0)
    centre = identity.brow_v - identity.brow_arch * np.sin(np.pi * np.clip(along * 0.9, 0.0, 1.0))
    half = 0.5 * identity.brow_thickness * (1.0 - 0.65 * along**1.5)
    brow = coverage(np.minimum(half - np.abs(v - centre), np.minimum(au - 0.1, 0.77 - au) * 0.4), ppu)
    brow = cv2.GaussianBlur(brow, (0, 0), max(0.5, 0.008 * ppu))
    noise = rng.standard_normal(u.shape).astype(np.float32)
    strokes = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(1.0, 0.03 * ppu), sigmaY=0.5)
    strokes /= strokes.std() + 1e-6
    return brow * np.clip(0.85 + 0.15 * strokes, 0.0, 1.0) * (1.0 - 0.35 * along)
