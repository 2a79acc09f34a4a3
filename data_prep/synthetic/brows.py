"""Eyebrows drawn hair by hair in the canonical frame.

Brow hairs follow a characteristic pattern: at the inner end they stand up, along the body they lie
outwards with the lower hairs pointing up and the upper ones down (so they meet along the middle), and
the tail thins out. Drawing a few hundred anti-aliased strokes at 4x resolution and averaging down gives
a soft, fibrous edge instead of a painted band.
"""

from __future__ import annotations

import cv2
import numpy as np

from data_prep.synthetic.camera import srgb_to_linear
from data_prep.synthetic.head_geometry import CanonicalGrid
from data_prep.synthetic.identity import FaceIdentity

_SUPERSAMPLE = 4
_INNER_U = 0.1  # |u| where the brows start
_LENGTH = 0.67  # extent of each brow along u


def eyebrow_alpha(identity: FaceIdentity, grid: CanonicalGrid, rng: np.random.Generator) -> np.ndarray:
    """Coverage of both eyebrows.

    Args:
        identity: the person (brow position, thickness, arch).
        grid: the canonical grid.
        rng: randomness of the strands.

    Returns:
        float32 [grid.height, grid.width] in [0, 1].
    """
    rows = grid.rows(identity.brow_v - 0.3, identity.brow_v + 0.25)
    cols = grid.cols(-(_INNER_U + _LENGTH + 0.15), _INNER_U + _LENGTH + 0.15)
    height, width = rows.stop - rows.start, cols.stop - cols.start
    scale = grid.px_per_unit * _SUPERSAMPLE
    u0 = grid.u0 + cols.start / grid.px_per_unit
    v0 = grid.v0 + rows.start / grid.px_per_unit
    canvas = np.zeros((height * _SUPERSAMPLE, width * _SUPERSAMPLE), np.uint8)

    density = rng.uniform(0.55, 1.0)  # sparse to full brows
    count = int(900 * density * identity.brow_thickness / 0.11)
    for side in (-1.0, 1.0):
        # Faces are not symmetric: each brow sits and arches a little differently.
        lift, arch = rng.normal(0.0, 0.008), rng.uniform(0.85, 1.15)
        strokes, across = _strokes(identity, rng, count, lift, arch)  # brow at positive u
        strokes[..., 0] *= side
        pixels = np.round(((strokes - np.array([u0, v0])) * scale) * 4).astype(np.int32)  # 2 fractional bits
        # Hairs at the brow's edges are finer and lighter than those in its middle.
        shade = rng.uniform(0.4, 1.0, len(pixels)) * (1.0 - 0.4 * np.abs(across))
        # cv2 draws one colour per call, so the hairs go in four bands of darkness.
        band = np.minimum((shade * 4).astype(int), 3)
        for k in range(4):
            chosen = [p for p, b in zip(pixels, band) if b == k]
            if chosen:
                cv2.polylines(canvas, chosen, False, int(255 * (k + 1) / 4), 1, cv2.LINE_AA, shift=2)
    small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    # Overlapping hairs darken more, but never fully hide the skin except where they are dense.
    small = 1.0 - np.exp(-2.2 * small)
    alpha = np.zeros((grid.height, grid.width), np.float32)
    alpha[rows, cols] = np.clip(small, 0.0, 1.0)
    return alpha


def eyebrow_colour(identity: FaceIdentity) -> np.ndarray:
    """Linear RGB colour of the brow hairs: like the hair but darker, greying with age.

    Returns:
        float32 [3].
    """
    hair = np.asarray(identity.hair, np.float32)
    skin = np.asarray(identity.skin, np.float32)
    brow = np.minimum(hair * 0.7, np.minimum(0.42, skin * 0.65))
    brow = brow * (1.0 - 0.5 * identity.hair_grey) + 0.45 * 0.5 * identity.hair_grey
    return srgb_to_linear(brow)


def _strokes(
    identity: FaceIdentity, rng: np.random.Generator, count: int, lift: float, arch: float
) -> tuple[np.ndarray, np.ndarray]:
    """Hair strokes of the brow at positive u.

    Args:
        identity: the person.
        rng: randomness of the strokes.
        count: number of strokes to aim for.
        lift: how far the brow is moved up (face units), for asymmetry between the sides.
        arch: factor on the identity's arch, for asymmetry between the sides.

    Returns:
        (strokes float [N, 3, 2] as 3-point (u, v) polylines, across float [N] in [-1, 1]: where each hair
        starts across the brow, -1 top edge .. +1 bottom edge).
    """
    # Denser where the brow is thicker and in its body; the inner head is sparser, the tail thins out.
    t = rng.uniform(0.0, 1.0, count * 3)
    width_t = 1.0 - 0.8 * t**1.5
    keep = width_t * (0.45 + 0.55 * np.clip(t / 0.2, 0.0, 1.0))
    t = t[rng.uniform(0.0, 1.0, t.shape) < keep][:count]
    n = t.shape[0]
    arch = identity.brow_arch * arch
    # The arch peaks about two thirds of the way out; the tail ends a little lower than the peak.
    peak = 0.65
    profile = 2.0 * t / peak - (t / peak) ** 2
    slope = (2.0 / peak - 2.0 * t / peak**2) * arch / _LENGTH  # d(arch height)/du
    centre_v = identity.brow_v - lift - arch * profile
    # Rounded at the inner head, widest just after it, tapering to a point at the tail.
    half = 0.5 * identity.brow_thickness * (1.0 - 0.8 * t**1.5) * np.sqrt(np.clip(t / 0.1, 0.25, 1.0))
    across = rng.uniform(-1.0, 1.0, n) * np.sqrt(rng.uniform(0.3, 1.0, n))  # -1 top edge .. +1 bottom edge
    start_u = _INNER_U + _LENGTH * t
    start_v = centre_v + across * half

    # Direction: along the brow's tangent, lower hairs tilted up and upper hairs down; at the inner end
    # (t < 0.15) the hairs stand up.
    tangent = np.arctan(-slope)
    body = tangent - 0.45 * across + rng.normal(0.0, 0.12, n)
    inner = np.deg2rad(-45.0) + rng.normal(0.0, 0.15, n)
    blend = np.clip((t - 0.02) / 0.12, 0.0, 1.0)
    angle = inner * (1.0 - blend) + body * blend
    length = rng.uniform(0.045, 0.085, n) * (1.0 - 0.3 * t) * (0.6 + 0.4 * blend)
    bend = rng.normal(0.0, 0.01, n)  # hairs are slightly curved
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=-1)
    start = np.stack([start_u, start_v], axis=-1)
    mid = start + 0.5 * length[:, None] * direction + bend[:, None] * normal
    end = start + length[:, None] * direction
    return np.stack([start, mid, end], axis=1), across
