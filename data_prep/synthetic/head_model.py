"""Static appearance of a synthetic head, drawn once per identity in the canonical (frontal) frame.

The head is a 2.5-D model: a height field over the canonical (u, v) plane plus per-pixel material
layers (channels in ``head_geometry``). The renderer deforms the jaw and eyelids in this frame, warps it
to the head pose and shades it with the normals stored here. This module combines the parts: face shape
(``face_relief``), skin (``skin``), brows (``brows``), ears and hair (``hair``).
"""

from __future__ import annotations

import numpy as np

from data_prep.synthetic import head_geometry as geo
from data_prep.synthetic.brows import eyebrow_alpha, eyebrow_colour
from data_prep.synthetic.face_relief import FaceShape, face_shape
from data_prep.synthetic.hair import hair_layers
from data_prep.synthetic.head_geometry import CanonicalGrid, gauss
from data_prep.synthetic.identity import HAIR_SHORT, FaceIdentity
from data_prep.synthetic.noise import coverage
from data_prep.synthetic.skin import pixel_detail, skin_albedo, skin_relief, skin_shine

# Slope of the pore bumps: enough to break up the specular sheen, too little to show in diffuse light.
_PORE_SLOPE = 0.2


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
    half_width = geo.face_half_width(identity, v[:, :1])  # [H, 1]

    face = face_shape(identity, u, v, half_width, ppu)
    wrinkles, pores = skin_relief(identity, u, v, ppu, rng)
    face_z = face.height + wrinkles * face.coverage
    albedo = skin_albedo(identity, u, v, face, ppu, rng)
    brow_alpha = eyebrow_alpha(identity, grid, rng)
    brow = brow_alpha[..., None]
    # The skin under the brows is a little darker too (fine hairs, shadow of the brow ridge).
    albedo = albedo * (1.0 - 0.9 * brow) + eyebrow_colour(identity) * 0.9 * brow

    ear, ear_z, ear_albedo = _ears(identity, u, v, face, albedo, ppu)
    is_ear = ear > face.coverage
    skin_cov = np.maximum(face.coverage, ear)
    skin_albedo_all = np.where(is_ear[..., None], ear_albedo, albedo)
    skin_z = np.where(is_ear, ear_z, face_z).astype(np.float32)

    hair = hair_layers(identity, grid, u, v, half_width, rng)
    # Skin just inside the hairline is darkened by fine hairs and the scalp showing through.
    hair_tint = np.minimum(hair.albedo, skin_albedo_all)
    skin_albedo_all = skin_albedo_all + (hair_tint - skin_albedo_all) * (0.35 * hair.scalp * face.coverage)[..., None]
    inside = face.coverage > 0
    hair_z = np.where(inside, face_z + 0.02 + (hair.height - face_z - 0.02) * hair.taper, hair.height)
    hair_z = hair_z.astype(np.float32)
    hair_visible = np.maximum(hair.front, hair.back * (1.0 - skin_cov))
    hv = hair_visible[..., None]
    alpha = 1.0 - (1.0 - skin_cov) * (1.0 - hair_visible)
    albedo = skin_albedo_all * (1.0 - hv) + hair.albedo * hv
    height = np.where(alpha > 0, skin_z * (1.0 - hair_visible) + hair_z * hair_visible, 0.0).astype(np.float32)
    # Skin and hair get normals from their own surfaces, so the step at the hairline does not draw a line.
    skin_height = np.where(skin_cov > 0, skin_z, 0.0).astype(np.float32)
    pores = pores * pixel_detail(ppu)
    skin_normal = _with_pores(geo.normals_from_height(skin_height, ppu), pores, face.coverage)
    normal = skin_normal * (1.0 - hv) + geo.normals_from_height(hair_z, ppu) * hv
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-6

    specular, gloss = skin_shine(identity, u, v, face)
    # Pores and brows interrupt the skin's sheen.
    specular = specular * (1.0 - 0.35 * np.clip(pores, 0, 1)) * (1.0 - brow_alpha)

    layers = np.zeros((grid.height, grid.width, geo.NUM_CHANNELS), np.float32)
    layers[..., geo.ALBEDO] = np.clip(albedo, 0.0, 1.0)
    layers[..., geo.ALPHA] = alpha
    layers[..., geo.HEIGHT] = height
    layers[..., geo.NORMAL] = normal
    layers[..., geo.SPECULAR] = specular * (1.0 - hair_visible) + hair.specular * hair_visible
    layers[..., geo.GLOSS] = gloss * (1.0 - hair_visible)
    layers[..., geo.SHEEN] = hair.sheen * hair_visible
    layers[..., geo.SUBSURFACE] = skin_cov * (1.0 - hair_visible) * (1.0 - brow_alpha * 0.8)
    occlusion = geo.ambient_occlusion(height, ppu) * _creases(identity, u, v, face)
    layers[..., geo.OCCLUSION] = occlusion * (1.0 - hair_visible) + hair.occlusion * occlusion * hair_visible
    # Only the face casts shadows (nose, brows, lips, chin); hair shadows on the face edge are an artefact
    # of the 2.5-D model, where hanging hair sits higher than the face's silhouette.
    visibility = geo.key_light_visibility(skin_height, ppu, identity.key_light)
    layers[..., geo.KEY_SHADOW] = visibility * (1.0 - hair_visible) + hair_visible
    return layers, grid


def _ears(
    identity: FaceIdentity, u: np.ndarray, v: np.ndarray, face: FaceShape, albedo: np.ndarray, ppu: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ears beside the head at nose height (only short hair leaves them visible).

    Returns:
        (coverage float32 [H, W], height float32 [H, W], albedo float32 [H, W, 3]): the ear is redder than
        the face (thin skin, blood close under it), its rim lighter and its bowl darker.
    """
    au = np.abs(u)
    ear_v = 0.3
    ear_u = float(geo.face_half_width(identity, np.array(ear_v))) + 0.02
    ear_sd = 0.08 * (1.0 - np.hypot((au - ear_u) / 0.08, (v - ear_v) / 0.3))
    ear = coverage(ear_sd, ppu) * (1.0 - face.coverage) * (identity.hair_style == HAIR_SHORT)
    ear_z = 0.22 + 0.08 * np.clip(ear_sd / 0.09, 0.0, 1.0) ** 0.5
    bowl = coverage(0.04 - np.abs(au - ear_u + 0.01) - 0.3 * np.abs(v - ear_v) ** 2, ppu)
    ear_z = ear_z - 0.03 * bowl
    rim = np.clip(1.0 - ear_sd / 0.025, 0.0, 1.0) * (ear_sd > 0)
    mean_skin = albedo[face.coverage > 0.5].mean(axis=0) if np.any(face.coverage > 0.5) else albedo[0, 0]
    ear_albedo = mean_skin * np.array([1.0, 0.82, 0.8], np.float32)
    ear_albedo = ear_albedo * (1.0 - 0.35 * bowl + 0.08 * rim)[..., None]
    return ear, ear_z.astype(np.float32), np.broadcast_to(ear_albedo, albedo.shape).astype(np.float32)


def _with_pores(normal: np.ndarray, pores: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Tilt the normals by the slope of the pore field (only on skin), float32 [H, W, 3]."""
    dz_dv, dz_du = np.gradient(pores * skin)
    out = normal.copy()
    out[..., 0] -= _PORE_SLOPE * dz_du
    out[..., 1] -= _PORE_SLOPE * dz_dv
    out /= np.linalg.norm(out, axis=-1, keepdims=True) + 1e-6
    return out


def _creases(identity: FaceIdentity, u: np.ndarray, v: np.ndarray, face: FaceShape) -> np.ndarray:
    """Ambient occlusion the height field misses: under the nose and lower lip, mouth corners, nostrils.

    Returns:
        float32 [H, W], 1 = open.
    """
    occ = np.ones(u.shape, np.float32)
    nose_v, mouth_v = identity.nose_v, identity.mouth_v
    occ -= 0.3 * gauss(u, v, 0.0, nose_v + 0.11, 0.1, 0.035)
    occ -= 0.5 * face.nostrils
    occ -= 0.25 * gauss(u, v, 0.0, mouth_v + identity.lower_lip + 0.04, 0.22, 0.03)
    for side in (-1.0, 1.0):
        occ -= 0.35 * gauss(u, v, side * identity.mouth_half_width, mouth_v, 0.035, 0.03)
        occ -= 0.25 * gauss(u, v, side * (identity.eye_x - identity.eye_half_width - 0.02), 0.0, 0.05, 0.06)
        occ -= 0.2 * gauss(u, v, side * identity.nose_width * 0.95, nose_v + 0.05, 0.04, 0.06)  # alar crease
    return np.clip(occ, 0.3, 1.0)
