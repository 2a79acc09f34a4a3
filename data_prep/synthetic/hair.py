"""Hair of a synthetic head (short, bob or long) in the canonical frame: coverage, height, colour and sheen.

Hair is modelled as a flow field: every pixel has an across-strand coordinate ``psi`` (constant along a
strand; strands fan out from the crown and then fall straight) and an along-strand coordinate (v).
Textures made of strands, clumps and locks are stretched along the flow by sampling noise lattices at
(psi, v). The same textures roughen the silhouette and the hairline into fibres, so the hair ends in
wisps instead of a hard helmet edge. The bright bands of hair are anisotropic (Kajiya-Kay) highlights of
the strands' tangents; with a fixed light and small head motion they are baked into a ``sheen`` layer.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_prep.synthetic.camera import srgb_to_linear
from data_prep.synthetic.head_geometry import NECK_HALF_WIDTH, V_CHEEK, CanonicalGrid, face_half_width
from data_prep.synthetic.identity import HAIR_LONG, HAIR_SHORT, FaceIdentity
from data_prep.synthetic.noise import coverage, smoothstep, value_noise

_PSI_RANGE = (-3.5, 3.5)  # extent of the across-strand coordinate, face units
_V_RANGE = (-2.6, 3.6)


@dataclasses.dataclass(frozen=True)
class HairLayers:
    """Hair on the canonical grid; every array is float32 [H, W] except ``albedo`` [H, W, 3].

    Attributes:
        front: coverage of hair lying over the face (fringe, temples, sideburns, over the cheek edges).
        back: coverage of hair behind the face (visible only where there is no skin).
        height: hair surface height, face units.
        albedo: linear RGB reflectance.
        specular: isotropic specular strength (small: hair's shine is in ``sheen``).
        sheen: baked anisotropic highlight, in units of the key light's radiance.
        occlusion: self-shadowing of the hair mass (1 = open).
        taper: 0..1, how much of the hair's thickness it has (thin at the hairline, full elsewhere).
        scalp: 0..1, skin just inside the hairline that short hairs and the scalp's shadow darken.
    """

    front: np.ndarray
    back: np.ndarray
    height: np.ndarray
    albedo: np.ndarray
    specular: np.ndarray
    sheen: np.ndarray
    occlusion: np.ndarray
    taper: np.ndarray
    scalp: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Strands:
    """Textures along the flow, float32 [H, W], each about zero mean and unit deviation."""

    fine: np.ndarray  # single strands (about a pixel across)
    clumps: np.ndarray  # groups of strands (a few millimetres)
    locks: np.ndarray  # locks (about a centimetre)
    grey: np.ndarray  # a second strand texture that picks the grey hairs


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
    psi = _flow(identity, u, v, ppu, rng)
    tex = _strand_textures(psi, v, ppu, rng)

    # Outer silhouette: the skull outline grown by the hair volume; locks of different lengths at the ends.
    top = identity.v_top - vol
    grown = (identity.face_width + vol) * np.clip(
        1.0 - np.abs((v[:, :1] - V_CHEEK) / (V_CHEEK - top)) ** 2.6, 0.0, 1.0
    ) ** (1 / 2.6)
    hang_bottom = {HAIR_SHORT: 0.15, HAIR_LONG: 2.9}.get(identity.hair_style, 1.15)
    hang_width = float(face_half_width(identity, np.array(V_CHEEK))) + vol
    if identity.hair_style == HAIR_SHORT:
        outer_row = np.where(
            v[:, :1] < V_CHEEK - 0.2, grown, grown * smoothstep(hang_bottom + 0.1, hang_bottom - 0.3, v[:, :1])
        )
    else:
        flare = 0.08 * smoothstep(0.5, hang_bottom, v[:, :1])
        outer_row = np.where(v[:, :1] < V_CHEEK, grown, hang_width + flare)
    outer = outer_row + 0.02 * tex.locks + 0.01 * tex.clumps
    end_v = hang_bottom + 0.07 * tex.locks + 0.03 * tex.clumps
    side_sd = outer - au + 0.012 * tex.fine
    end_sd = end_v - v
    # Fibrous edges: over the last ~2 mm the strands thin out one by one (the fine texture decides which),
    # so the outline is a soft fringe rather than a cut-out helmet edge.
    soft = max(1.0 / ppu, 0.03)
    outline_sd = np.minimum(np.minimum(side_sd, end_sd), v - top + 0.015 * tex.fine)
    hair_region = np.clip(outline_sd / soft + 0.5 + 0.35 * tex.fine, 0.0, 1.0) ** 1.5
    # Tips are thinner than the roots: strands end one by one over the last few centimetres.
    hair_region *= smoothstep(-0.5, 1.0, end_sd / 0.12 + 0.5 * tex.fine)
    hair_region = np.maximum(hair_region, _flyaways(identity, grid, outer_row, top, hang_bottom, rng))

    hair_front, taper, scalp, cap_sd = _front_coverage(identity, u, v, half_width, tex, end_v, ppu, rng)
    hair_front *= hair_region
    hair_back = hair_region
    if identity.hair_style == HAIR_LONG:
        # Long hair falls behind the neck, so it must not cover the throat below the chin.
        neck_gap = coverage(au - (NECK_HALF_WIDTH + 0.06 + 0.02 * tex.clumps), ppu)
        below_jaw = smoothstep(identity.v_chin - 0.6, identity.v_chin - 0.3, v)
        hair_back = hair_region * (1.0 - below_jaw * (1.0 - neck_gap))
        hair_front = hair_front * (1.0 - below_jaw * (1.0 - neck_gap))

    shell_width = np.maximum(outer_row, 1e-3)
    shell = (identity.depth + vol) * np.sqrt(np.clip(1.0 - (u / shell_width) ** 2, 0.0, 1.0))
    crown_fall = np.sqrt(np.clip(1.0 - ((v - V_CHEEK) / (V_CHEEK - top + 0.02)) ** 2, 0.0, 1.0))
    hang_fall = 1.0 - 0.4 * smoothstep(V_CHEEK, V_CHEEK + 0.6, v)
    shell = (shell * np.where(v < V_CHEEK, crown_fall, hang_fall)).astype(np.float32)
    # Locks bulge a little; single strands are far below a pixel in height and only show in colour.
    hair_z = (shell + 0.006 * tex.locks + 0.002 * tex.clumps).astype(np.float32)

    albedo = _hair_albedo(identity, tex, v, cap_sd, end_sd)
    sheen = _anisotropic_sheen(identity, psi, shell, tex, ppu)
    # Self-shadowing: hair hanging beside the face and behind the neck is darker than the outer surface.
    beside_face = smoothstep(V_CHEEK - 0.4, V_CHEEK, v) * smoothstep(0.25, 0.0, au - half_width)
    occlusion = 1.0 - 0.45 * beside_face * (1.0 - 0.5 * hair_front) - 0.08 * smoothstep(0.5, -0.5, tex.locks)
    return HairLayers(
        front=hair_front.astype(np.float32),
        back=hair_back.astype(np.float32),
        height=hair_z,
        albedo=albedo.astype(np.float32),
        specular=np.full(u.shape, 0.08, np.float32),
        sheen=sheen.astype(np.float32),
        occlusion=np.clip(occlusion, 0.3, 1.0).astype(np.float32),
        taper=taper.astype(np.float32),
        scalp=scalp.astype(np.float32),
    )


def _flow(identity: FaceIdentity, u: np.ndarray, v: np.ndarray, ppu: float, rng: np.random.Generator) -> np.ndarray:
    """Across-strand coordinate: strands fan out from above the parting, then fall vertically, with waves.

    Returns:
        float32 [H, W], face units (equal to u where the hair hangs straight).
    """
    crown_v = identity.v_top - 0.6
    turn_v = V_CHEEK - 0.35  # below this the strands hang straight down
    radial = identity.hair_part + (u - identity.hair_part) * (turn_v - crown_v) / np.maximum(v - crown_v, 0.1)
    blend = smoothstep(turn_v - 0.6, turn_v + 0.3, v)
    psi = radial * (1.0 - blend) + u * blend
    # Waves: neighbouring strands wave together (phase varies slowly across the flow), amplitude grows
    # down the hair as it gets heavier.
    phase = value_noise(rng, u.shape, 0.4 * ppu) * 1.5
    amplitude = identity.hair_wave * 0.06 * (0.4 + 0.6 * smoothstep(-1.0, 1.5, v))
    psi = psi + amplitude * np.sin(v * rng.uniform(8.0, 14.0) + phase)
    psi = psi + 0.025 * value_noise(rng, u.shape, 0.5 * ppu, octaves=2)  # combing is never perfect
    return psi.astype(np.float32)


def _strand_textures(psi: np.ndarray, v: np.ndarray, ppu: float, rng: np.random.Generator) -> _Strands:
    """Noise stretched along the flow: lattices over (psi, v) with fine cells across and long cells along.

    Where strands converge (towards the crown) psi changes faster than u, so a lattice cell spans fewer
    pixels; like a mip-map, coarser lattices take over there so that no texture is finer than a pixel.
    """
    smooth = cv2.GaussianBlur(psi, (0, 0), max(1.0, 0.03 * ppu))
    dpsi_dv, dpsi_du = np.gradient(smooth, 1.0 / ppu)
    squeeze = np.maximum(np.hypot(dpsi_du, dpsi_dv), 0.5)  # psi units per face unit across the strands
    map_y_cache: dict[float, np.ndarray] = {}

    def lattice_lookup(cell_psi: float, cell_v: float) -> np.ndarray:
        cols = int(np.ceil((_PSI_RANGE[1] - _PSI_RANGE[0]) / cell_psi)) + 4
        rows = int(np.ceil((_V_RANGE[1] - _V_RANGE[0]) / cell_v)) + 4
        lattice = rng.standard_normal((rows, cols)).astype(np.float32)
        map_x = ((psi - _PSI_RANGE[0]) / cell_psi + 1.0).astype(np.float32)
        if cell_v not in map_y_cache:
            map_y_cache[cell_v] = ((v - _V_RANGE[0]) / cell_v + 1.0).astype(np.float32)
        return cv2.remap(lattice, map_x, map_y_cache[cell_v], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)

    def along_flow(cell_psi: float, cell_v: float) -> np.ndarray:
        finest = 0.9 / ppu  # psi cell that spans a pixel where the strands do not converge
        cell = max(cell_psi, finest)
        # Mip level per pixel: how many times coarser than ``cell`` the lattice must be to span a pixel.
        level = np.clip(np.log2(finest * squeeze / cell), 0.0, 2.0)
        out = np.zeros(psi.shape, np.float32)
        for k in range(3):
            weight = np.clip(1.0 - np.abs(level - k), 0.0, 1.0)
            if weight.max() > 0:
                out += weight * lattice_lookup(cell * 2.0**k, cell_v)
        return out / (out.std() + 1e-6)

    return _Strands(
        fine=along_flow(0.005, 0.5),
        clumps=along_flow(0.022, 0.8),
        locks=along_flow(0.08, 1.4),
        grey=along_flow(0.012, 0.8),
    )


def _front_coverage(
    identity: FaceIdentity,
    u: np.ndarray,
    v: np.ndarray,
    half_width: np.ndarray,
    tex: _Strands,
    end_v: np.ndarray,
    ppu: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hair over the face: the hairline (a soft, fibrous ramp), temples, sideburns, hair over the cheeks.

    Returns:
        (front coverage, taper, scalp, cap signed distance), float32 [H, W] each.
    """
    au = np.abs(u)
    edge_u = np.clip(au / np.maximum(half_width, 1e-3), 0.0, 1.0)
    # The hairline is an arc, rising from the middle of the forehead to the temple corners, then falls
    # along the temples to the sideburns; it wanders a little.
    hairline = identity.hairline_v - 0.1 * np.clip(au / 0.55, 0.0, 1.0) ** 2 + 0.55 * edge_u**4
    hairline = hairline + 0.02 * tex.locks
    if identity.masculine:
        # Receding temples (an M-shaped hairline), more with age.
        recede = identity.age * rng.uniform(0.1, 0.3)
        hairline = hairline - recede * np.exp(-0.5 * ((au - 0.45) / 0.16) ** 2)
    cap_sd = hairline - v
    # Near the hairline hairs are fine and sparse; density ramps up over about 5 mm (0.07 units).
    ramp = cap_sd / 0.1 + 0.45 * tex.fine + 0.3 * tex.clumps
    cap = smoothstep(-0.2, 1.2, ramp)
    sideburn_bottom = 0.2 if identity.hair_style == HAIR_SHORT else 0.35
    side = smoothstep(-0.3, 1.2, (au - (half_width - 0.09)) / 0.05 + 0.4 * tex.fine + 0.3 * tex.clumps)
    side *= coverage(sideburn_bottom - v, ppu)
    front = np.maximum(cap, side)
    if identity.hair_style != HAIR_SHORT:
        # Bob and long hair hang over the cheek edges and hide the ears.
        cheek = smoothstep(-0.3, 1.2, (au - (half_width - 0.05)) / 0.04 + 0.4 * tex.fine + 0.4 * tex.locks)
        front = np.maximum(front, cheek * np.clip((end_v - v) / 0.02, 0.0, 1.0))
        # Parting: a thin line of scalp.
        part = coverage(0.008 - np.abs(u - identity.hair_part), ppu) * smoothstep(hairline, hairline - 0.4, v)
        front = front * (1.0 - 0.6 * part)
    # Hair thins out towards the hairline instead of ending in a step. Only the fringe over the forehead
    # tapers; hair at the sides keeps the shell height so that the height (and the normals derived from it)
    # stays continuous across the face outline.
    taper = np.maximum(smoothstep(0.0, 0.3, cap_sd), smoothstep(0.0, 1.0, side))
    scalp = smoothstep(-0.08, 0.04, cap_sd)
    return front, taper, scalp, cap_sd


def _flyaways(
    identity: FaceIdentity,
    grid: CanonicalGrid,
    outer_row: np.ndarray,
    top: float,
    hang_bottom: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Stray hairs that leave the silhouette in loose arcs, drawn at 2x and averaged down.

    Returns:
        float32 [H, W] coverage of the stray hairs.
    """
    ss = 2
    ppu = grid.px_per_unit
    canvas = np.zeros((grid.height * ss, grid.width * ss), np.uint8)
    rows_v = grid.v0 + np.arange(grid.height) / ppu
    widths = outer_row[:, 0]
    count = int(rng.uniform(6, 24))
    lines = []
    for _ in range(count):
        if rng.uniform() < 0.45:  # from the top of the head
            start_u = rng.uniform(-0.85, 0.85) * (identity.face_width + identity.hair_volume)
            inside = np.nonzero(widths > abs(start_u))[0]
            if inside.size == 0:
                continue
            start_v = rows_v[inside[0]] + 0.02
            direction = np.array([start_u * 0.6, -1.0])
        else:  # from the sides
            start_v = rng.uniform(top + 0.4, min(hang_bottom, 2.6))
            side = rng.choice([-1.0, 1.0])
            start_u = side * (float(np.interp(start_v, rows_v, widths)) - 0.02)
            direction = np.array([side, rng.uniform(-0.3, 0.8)])
        direction = direction / np.linalg.norm(direction)
        length = rng.uniform(0.05, 0.2)
        curl = rng.normal(0.0, 1.5)
        points, angle = [], np.arctan2(direction[1], direction[0])
        pu, pv = start_u, start_v
        for _ in range(6):
            points.append(((pu - grid.u0) * ppu * ss, (pv - grid.v0) * ppu * ss))
            pu += np.cos(angle) * length / 5
            pv += np.sin(angle) * length / 5 + 0.01  # gravity
            angle += curl * length / 5
        lines.append(np.round(np.array(points) * 4).astype(np.int32))
    strength = int(rng.uniform(60, 130))
    if not lines:
        return np.zeros((grid.height, grid.width), np.float32)
    cv2.polylines(canvas, lines, False, strength, 1, cv2.LINE_AA, shift=2)
    return cv2.resize(canvas, (grid.width, grid.height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _hair_albedo(
    identity: FaceIdentity, tex: _Strands, v: np.ndarray, cap_sd: np.ndarray, end_sd: np.ndarray
) -> np.ndarray:
    """Strand-by-strand colour: lognormal brightness, grey strands, darker roots, lighter tips."""
    base = srgb_to_linear(identity.hair)
    tone = np.exp(0.1 * tex.fine + 0.12 * tex.clumps + 0.12 * tex.locks)
    albedo = base * tone[..., None]
    # Roots near the hairline and parting are darker (less sun, the scalp's shadow); tips of long hair lighter.
    albedo *= (0.75 + 0.25 * smoothstep(0.0, 0.25, cap_sd))[..., None]
    albedo *= (1.0 + 0.25 * smoothstep(0.8, 0.0, end_sd) * smoothstep(0.0, 1.0, v))[..., None]
    if identity.hair_grey > 0:
        # Grey strands are finer than a pixel at video sizes, so they lighten the hair rather than stripe it.
        grey = smoothstep(0.9, -0.9, tex.grey - _quantile_of_normal(identity.hair_grey))
        grey_colour = srgb_to_linear((0.55, 0.54, 0.53)) * np.exp(0.15 * tex.fine)[..., None]
        albedo = albedo * (1.0 - grey[..., None]) + grey_colour * grey[..., None]
    return albedo


def _quantile_of_normal(share: float) -> float:
    """Z such that a standard normal variable is below z with probability ``share`` (logistic approximation)."""
    share = float(np.clip(share, 1e-3, 1 - 1e-3))
    return float(np.log(share / (1.0 - share)) / 1.702)


def _anisotropic_sheen(
    identity: FaceIdentity, psi: np.ndarray, shell: np.ndarray, tex: _Strands, ppu: float
) -> np.ndarray:
    """Kajiya-Kay highlight of the strands for the identity's key light at rest pose.

    A strand reflects light into a cone around its tangent, so the highlight is a band across the hair
    where the tangent is perpendicular to the half vector; it is broken up strand by strand.

    Returns:
        float32 [H, W].
    """
    smooth_psi = cv2.GaussianBlur(psi, (0, 0), max(1.0, 0.03 * ppu))
    dpsi_dv, dpsi_du = np.gradient(smooth_psi, 1.0 / ppu)
    # The strand direction is perpendicular to grad psi, pointing down the hair.
    tu, tv = -dpsi_dv, dpsi_du
    flip = np.where(tv < 0, -1.0, 1.0)
    tu, tv = tu * flip, tv * flip
    norm = np.hypot(tu, tv) + 1e-6
    tu, tv = tu / norm, tv / norm
    smooth_z = cv2.GaussianBlur(shell, (0, 0), max(1.0, 0.03 * ppu))
    dz_dv, dz_du = np.gradient(smooth_z, 1.0 / ppu)
    tz = dz_du * tu + dz_dv * tv  # the strand follows the shell: it rises towards the camera over the crown
    t_norm = np.sqrt(tu * tu + tv * tv + tz * tz)
    normal = np.stack([-dz_du, -dz_dv, np.ones_like(dz_du)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)

    key = np.asarray(identity.key_light, np.float32)
    half = key + np.array([0.0, 0.0, 1.0], np.float32)
    half /= np.linalg.norm(half)
    n_dot_l = normal @ key
    lit = smoothstep(-0.15, 0.35, n_dot_l)
    sheen = np.zeros(psi.shape, np.float32)
    for shift, power, strength in ((-0.12, 60.0, 0.09), (0.12, 16.0, 0.035)):
        # Cuticle scales tilt the reflection: the primary lobe shifts towards the root, the secondary
        # (light that passed through the strand) towards the tip.
        t = np.stack([tu / t_norm, tv / t_norm, tz / t_norm], axis=-1) + shift * normal
        t /= np.linalg.norm(t, axis=-1, keepdims=True)
        t_dot_h = t @ half
        sheen += strength * np.power(np.clip(1.0 - t_dot_h * t_dot_h, 0.0, 1.0), power / 2.0)
    breakup = np.clip(1.0 + 0.15 * tex.fine + 0.35 * tex.clumps + 0.3 * tex.locks, 0.2, 2.0)
    # Dark hair shows its highlights most; blond hair scatters light inside and looks more uniform.
    contrast = 1.0 - 0.5 * float(np.mean(identity.hair))
    return sheen * lit * breakup * contrast
