"""Geometry of the synthetic head in the canonical (frontal) frame: grid, outlines, normals, shadows.

Coordinates are face units (see ``identity``): u to the viewer's right, v down (0 on the pupil line),
z towards the camera. Per-pixel head appearance is a stack of float32 channels indexed by the constants
below.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_prep.synthetic.identity import FaceIdentity

# Channels of a layer stack [H, W, NUM_CHANNELS] (float32).
ALBEDO = slice(0, 3)  # linear RGB reflectance
ALPHA = 3  # coverage of the head (skin, ears, hair)
HEIGHT = 4  # z towards the camera, face units
NORMAL = slice(5, 8)  # unit surface normal in the canonical frame (x right, y down, z out)
SPECULAR = 8  # specular strength
SUBSURFACE = 9  # 1 for skin (light bleeds into the shadow side in red), 0 for hair and eyes
OCCLUSION = 10  # ambient occlusion, 1 = open
KEY_SHADOW = 11  # visibility of the key light, 1 = lit
GLOSS = 12  # 0 broad, rough sheen (skin) .. 1 tight, wet highlight (lips, eyes, teeth)
SHEEN = 13  # baked view-dependent highlight (hair's anisotropic bands), in units of the key light
NUM_CHANNELS = 14

# Extent of the canonical grid in face units; long hair reaches the shoulders.
U_EXTENT = 2.3
V_FIRST = -2.25
V_LAST = 3.4
NECK_HALF_WIDTH = 0.7


@dataclasses.dataclass(frozen=True)
class CanonicalGrid:
    """Pixel grid of the canonical frame: pixel (row, col) sits at (u, v) = (u0 + col/ppu, v0 + row/ppu)."""

    px_per_unit: float
    u0: float
    v0: float
    width: int
    height: int

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Canonical coordinates of every pixel centre: (u, v), float32 [height, width] each."""
        u = self.u0 + np.arange(self.width, dtype=np.float32) / self.px_per_unit
        v = self.v0 + np.arange(self.height, dtype=np.float32) / self.px_per_unit
        return np.broadcast_to(u[None, :], (self.height, self.width)), np.broadcast_to(
            v[:, None], (self.height, self.width)
        )

    def to_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canonical coordinates to (column, row) pixel positions, float32."""
        return (
            ((u - self.u0) * self.px_per_unit).astype(np.float32),
            ((v - self.v0) * self.px_per_unit).astype(np.float32),
        )

    def rows(self, v_start: float, v_stop: float) -> slice:
        """Rows covering v in [v_start, v_stop], clipped to the grid."""
        first = int(np.floor((v_start - self.v0) * self.px_per_unit))
        last = int(np.ceil((v_stop - self.v0) * self.px_per_unit)) + 1
        return slice(max(0, first), min(self.height, max(0, last)))

    def cols(self, u_start: float, u_stop: float) -> slice:
        """Columns covering u in [u_start, u_stop], clipped to the grid."""
        first = int(np.floor((u_start - self.u0) * self.px_per_unit))
        last = int(np.ceil((u_stop - self.u0) * self.px_per_unit)) + 1
        return slice(max(0, first), min(self.width, max(0, last)))


def make_grid(px_per_unit: float) -> CanonicalGrid:
    """The canonical grid at a given resolution (pixels per face unit)."""
    width = int(np.ceil(2 * U_EXTENT * px_per_unit)) + 1
    height = int(np.ceil((V_LAST - V_FIRST) * px_per_unit)) + 1
    return CanonicalGrid(px_per_unit, -U_EXTENT, V_FIRST, width, height)


V_CHEEK = 0.12  # v of the widest point of the face


def face_half_width(identity: FaceIdentity, v: np.ndarray) -> np.ndarray:
    """Half-width of the face/skull outline at height v (0 above the skull and below the chin).

    Args:
        identity: the person.
        v: float array, canonical v.

    Returns:
        float array like ``v``, face units.
    """
    v = np.asarray(v, dtype=np.float32)
    # The cranium is a broad dome: a superellipse, flatter than an ellipse at the temples.
    upper = np.clip(1.0 - np.abs((v - V_CHEEK) / (V_CHEEK - identity.v_top)) ** 2.6, 0.0, 1.0) ** (1 / 2.6)
    t = np.clip((v - V_CHEEK) / (identity.v_chin - V_CHEEK), 0.0, 1.0)
    # Jaw: close to the cheek width down to the jaw angle, then narrowing to a rounded chin.
    lower = np.sqrt(np.clip(1.0 - t**2.2, 0.0, 1.0)) * (1.0 - identity.jaw_taper * t**2)
    lower = np.where(v > identity.v_chin, 0.0, lower)
    return identity.face_width * np.where(v < V_CHEEK, upper, lower)


def lip_outlines(identity: FaceIdentity, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outlines of the closed lips as functions of u.

    Returns:
        (upper_top, lower_bottom, profile): v of the top of the upper lip, v of the bottom of the lower lip,
        and the lens profile in [0, 1] (1 mid-mouth, 0 at and beyond the corners), arrays like ``u``.
    """
    x = np.clip(np.abs(u) / identity.mouth_half_width, 0.0, 1.0)
    profile = np.sqrt(np.clip(1.0 - x**2, 0.0, 1.0))
    # Cupid's bow: two peaks either side of the philtrum with a dip between.
    bow = 0.22 * np.exp(-0.5 * ((np.abs(u) - 0.09) / 0.05) ** 2) - 0.25 * np.exp(-0.5 * (u / 0.035) ** 2)
    upper_top = identity.mouth_v - identity.upper_lip * (profile**0.6) * (1.0 + bow)
    lower_bottom = identity.mouth_v + identity.lower_lip * np.clip(1.0 - (x / 0.95) ** 2, 0.0, 1.0) ** 0.55
    return upper_top, lower_bottom, profile


def eye_opening(
    identity: FaceIdentity, u: np.ndarray, side: int, blink: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper- and lower-lid edges of one eye as functions of u.

    Args:
        identity: the person.
        u: float array, canonical u.
        side: -1 for the eye at negative u, +1 for the other.
        blink: 0 open .. 1 closed.

    Returns:
        (top, bottom, inside): v of the upper-lid edge, v of the lower-lid edge, and a mask-like [0, 1]
        profile that is 0 beyond the eye corners.
    """
    centre = side * identity.eye_x
    # Almond shape: the outer corner sits a little higher than the inner one.
    x = (u - centre) / identity.eye_half_width
    inside = np.clip(1.0 - x**2, 0.0, 1.0)
    tilt = -0.025 * side * (u - centre) / identity.eye_half_width
    peak_shift = 0.15 * side  # the upper lid is highest slightly towards the outer corner
    top_open = -identity.eye_open_height * np.clip(1.0 - (x - peak_shift) ** 2, 0.0, 1.0) ** 0.75 + tilt
    bottom = identity.eye_open_height * 0.62 * inside**0.85 + tilt
    closed = bottom - 0.004
    top = top_open + (closed - top_open) * blink
    return top, bottom, inside


def gauss(u: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
    """Axis-aligned Gaussian bump of height 1 centred at (cu, cv) with widths (su, sv)."""
    return np.exp(-0.5 * (((u - cu) / su) ** 2 + ((v - cv) / sv) ** 2))


def segment_distance(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance from each (u, v) to the segment a-b."""
    du, dv = b[0] - a[0], b[1] - a[1]
    t = np.clip(((u - a[0]) * du + (v - a[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - (a[0] + t * du), v - (a[1] + t * dv))


def normals_from_height(height: np.ndarray, px_per_unit: float) -> np.ndarray:
    """Unit normals of a height field.

    Args:
        height: float32 [H, W], face units.
        px_per_unit: pixels per face unit.

    Returns:
        float32 [H, W, 3] normals (x right, y down, z towards the camera).
    """
    smooth = cv2.GaussianBlur(height, (0, 0), 0.7)
    dz_dv, dz_du = np.gradient(smooth, 1.0 / px_per_unit)
    normal = np.stack([-dz_du, -dz_dv, np.ones_like(smooth)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    return normal.astype(np.float32)


def ambient_occlusion(height: np.ndarray, px_per_unit: float) -> np.ndarray:
    """Darkening of creases: how far the surface lies below its blurred surroundings."""
    occ = np.ones_like(height)
    for sigma, weight in ((0.05, 2.5), (0.15, 1.2)):
        around = cv2.GaussianBlur(height, (0, 0), max(0.8, sigma * px_per_unit))
        occ -= weight * np.clip(around - height, 0.0, None)
    return np.clip(occ, 0.35, 1.0).astype(np.float32)


def key_light_visibility(height: np.ndarray, px_per_unit: float, light: tuple[float, float, float]) -> np.ndarray:
    """Soft shadows cast on the height field by a distant light (march towards the light, keep the worst)."""
    lx, ly, lz = light
    planar = float(np.hypot(lx, ly))
    if planar < 1e-3:
        return np.ones_like(height)
    step_px = max(1.0, 0.02 * px_per_unit)
    rise_per_px = lz / planar / px_per_unit  # height gained per pixel travelled towards the light
    blocked = np.zeros_like(height)
    h, w = height.shape
    for k in range(1, 21):
        dx = int(round(k * step_px * lx / planar))
        dy = int(round(k * step_px * ly / planar))
        if abs(dx) >= w or abs(dy) >= h:
            break
        shifted = np.full_like(height, -1.0)
        ys, yd = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
        xs, xd = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
        shifted[yd, xd] = height[ys, xs]
        excess = shifted - height - np.hypot(dx, dy) * rise_per_px
        blocked = np.maximum(blocked, excess)
    visibility = np.clip(1.0 - blocked / 0.04, 0.0, 1.0)
    return cv2.GaussianBlur(visibility, (0, 0), max(0.7, 0.02 * px_per_unit)).astype(np.float32)
