"""Hair of a synthetic head (short, bob or long) in the canonical frame: coverage, height and colour."""

from __future__ import annotations

import dataclasses

import numpy as np

from data_prep.synthetic.head_geometry import NECK_HALF_WIDTH, V_CHEEK, CanonicalGrid, face_half_width
from data_prep.synthetic.identity import HAIR_BOB, HAIR_LONG, HAIR_SHORT, FaceIdentity
from data_prep.synthetic.noise import coverage, noise_1d, smoothstep, value_noise


@dataclasses.dataclass(frozen=True)
class HairLayers:
    """Hair on the canonical grid; every array is float32 [H, W] except ``albedo`` [H, W, 3].

    Attributes:
        front: coverage of hair lying over the face (fringe, temples, sideburns, over the cheek edges).
        back: coverage of hair behind the face (visible only where there is no skin).
        height: hair surface height, face units.
        albedo: linear RGB reflectance.
        specular: specular strength.
        taper: 0..1, how much of the hair's thickness it has (thin at the hairline, full elsewhere).
    """

    front: np.ndarray
    back: np.ndarray
    height: np.ndarray
    albedo: np.ndarray
    specular: np.ndarray
    taper: np.ndarray


def hair_layers(
    identity: FaceIdentity,
    grid: CanonicalGrid,
    u: np.ndarray,
    v: np.ndarray,
    half_width: np.ndarray,
    rng: np.random.Generator,
) -> HairLayers:
    """Draw the identity's hairstyle.

    Args:
        identity: the person.
        grid: the canonical grid.
        u: float32 [H, W] canonical u of every pixel.
        v: float32 [H, W] canonical v of every pixel.
        half_width: float32 [H, 1] face outline half-width per row (``face_half_width``).
        rng: texture randomness.

    Returns:
        The hair layers.
    """
    ppu = grid.px_per_unit
    au = np.abs(u)
    vol = identity.hair_volume
    # Strands fan out from a point high above the parting, so they run down and slightly outwards; a 1-D
    # noise over the fan angle gives each strand its own brightness.
    crown_v = identity.v_top - 2.5
    # Low-frequency bending makes the strands wavy rather than ruler-straight.
    bend = value_noise(rng, u.shape, 0.35 * ppu, octaves=2)
    angle = np.arctan2(u - identity.hair_part, v - crown_v) + 0.004 * bend
    radius = np.hypot(u - identity.hair_part, v - crown_v)
    lookup = 2048
    coarse = noise_1d(rng, lookup, lookup / 150.0)
    fine = noise_1d(rng, lookup, lookup / 700.0)
    index = (np.clip(angle / 1.6 + 0.5, 0.0, 1.0) * (lookup - 1)).astype(np.int32)
    strand = 0.6 * coarse[index] + 0.4 * fine[index]
    waves = 0.5 * np.sin(radius * 14.0 + coarse[index] * 2.0)

    # Outer silhouette: the skull outline grown by the hair volume, made wispy by the strands.
    top = identity.v_top - vol
    grown = (identity.face_width + vol) * np.clip(
        1.0 - np.abs((v[:, :1] - V_CHEEK) / (V_CHEEK - top)) ** 2.6, 0.0, 1.0
    ) ** (1 / 2.6)
    hang_bottom = {HAIR_SHORT: 0.15, HAIR_BOB: 1.15, HAIR_LONG: 2.9}[identity.hair_style]
    hang_width = float(face_half_width(identity, np.array(V_CHEEK))) + vol
    if identity.hair_style == HAIR_SHORT:
        outer = np.where(v < V_CHEEK - 0.2, grown, grown * smoothstep(hang_bottom + 0.1, hang_bottom - 0.3, v))
    else:
        flare = 0.08 * smoothstep(0.5, hang_bottom, v)
        outer = np.where(v < V_CHEEK, grown, hang_width + flare)
    clumps = coarse[index]
    outer = outer + 0.015 * clumps
    end_v = hang_bottom + 0.06 * clumps
    outer_sd = np.minimum(outer - au, end_v - v)
    hair_region = coverage(outer_sd, ppu) * coverage(v - top, ppu)

    # Hairline: across the forehead, dropping at the temples, then sideburns hugging the face edge.
    edge_u = np.clip(au / np.maximum(half_width, 1e-3), 0.0, 1.0)
    hairline = identity.hairline_v + 0.45 * edge_u**3.5
    cap_sd = hairline + 0.015 * clumps - v
    sideburn_bottom = 0.2 if identity.hair_style == HAIR_SHORT else 0.35
    side_sd = np.minimum(au - (half_width - 0.09 - 0.015 * clumps), sideburn_bottom - v)
    front_sd = np.maximum(cap_sd, side_sd)
    if identity.hair_style != HAIR_SHORT:
        # Bob and long hair hang over the cheek edges and hide the ears.
        cheek_sd = np.minimum(au - (half_width - 0.05 - 0.015 * clumps), end_v - v)
        front_sd = np.maximum(front_sd, cheek_sd)
    hair_front = coverage(front_sd, ppu) * hair_region
    hair_back = hair_region
    if identity.hair_style == HAIR_LONG:
        # Long hair falls behind the neck, so it must not cover the throat below the chin.
        neck_gap = coverage(au - (NECK_HALF_WIDTH + 0.06), ppu)
        below_jaw = smoothstep(identity.v_chin - 0.6, identity.v_chin - 0.3, v)
        hair_back = hair_region * (1.0 - below_jaw * (1.0 - neck_gap))
        hair_front = hair_front * (1.0 - below_jaw * (1.0 - neck_gap))
    # Parting: a thin line of scalp.
    if identity.hair_style != HAIR_SHORT:
        part = coverage(0.008 - np.abs(u - identity.hair_part), ppu) * smoothstep(hairline, hairline - 0.4, v)
        hair_front = hair_front * (1.0 - 0.5 * part)

    shell_width = np.maximum(outer, 1e-3)
    hair_z = (identity.depth + vol) * np.sqrt(np.clip(1.0 - (u / shell_width) ** 2, 0.0, 1.0))
    crown_fall = np.sqrt(np.clip(1.0 - ((v - V_CHEEK) / (V_CHEEK - top + 0.02)) ** 2, 0.0, 1.0))
    hang_fall = 1.0 - 0.4 * smoothstep(V_CHEEK, V_CHEEK + 0.6, v)
    hair_z *= np.where(v < V_CHEEK, crown_fall, hang_fall)
    hair_z += 0.004 * strand + 0.004 * waves
    hair_z = hair_z.astype(np.float32)

    base = np.square(np.array(identity.hair, np.float32))
    tone = np.clip(1.0 + 0.2 * strand + 0.06 * waves, 0.4, 1.8)
    # Roots and the inside of the hair mass are darker than the tips and the surface.
    depth_shade = 0.75 + 0.25 * smoothstep(0.0, 0.25, outer - au)
    hair_albedo = base * (tone * depth_shade)[..., None]
    hair_spec = (0.18 + 0.12 * np.clip(strand, -1, 1)).astype(np.float32)
    # Hair thins out towards the hairline instead of ending in a step. Only the fringe over the forehead
    # tapers; hair at the sides keeps the shell height so that the height (and the normals derived from it)
    # stays continuous across the face outline.
    taper = np.maximum(smoothstep(0.0, 0.3, cap_sd), smoothstep(-0.05, 0.1, front_sd - cap_sd))
    return HairLayers(
        front=hair_front.astype(np.float32),
        back=hair_back.astype(np.float32),
        height=hair_z,
        albedo=hair_albedo.astype(np.float32),
        specular=hair_spec,
        taper=taper.astype(np.float32),
    )
