"""Shape of the bare face in the canonical frame: outline, height field (skull plus facial relief), lip masks.

Heights are face units towards the camera. The relief is a sum of smooth bumps and grooves placed at the
anatomical landmarks of ``identity`` (brow ridge, eye sockets, cheekbones, nose, nasolabial folds, lips,
chin); age deepens the folds and adds bags under the eyes.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_prep.synthetic import head_geometry as geo
from data_prep.synthetic.head_geometry import V_CHEEK, gauss
from data_prep.synthetic.identity import FaceIdentity
from data_prep.synthetic.noise import coverage, smoothstep


@dataclasses.dataclass(frozen=True)
class FaceShape:
    """The bare face on the canonical grid (float32 [H, W] arrays).

    Attributes:
        coverage: inside the face/skull outline, anti-aliased.
        height: skull plus facial relief, face units.
        upper_lip: coverage of the upper lip (red part).
        lower_lip: coverage of the lower lip.
        lip_profile: 1 mid-mouth .. 0 at the mouth corners and beyond.
        nostrils: coverage of the nostril openings.
    """

    coverage: np.ndarray
    height: np.ndarray
    upper_lip: np.ndarray
    lower_lip: np.ndarray
    lip_profile: np.ndarray
    nostrils: np.ndarray


def face_shape(identity: FaceIdentity, u: np.ndarray, v: np.ndarray, half_width: np.ndarray, ppu: float) -> FaceShape:
    """Outline, height field and lip/nostril masks of the bare face.

    Args:
        identity: the person.
        u: float32 [H, W] canonical u of every pixel.
        v: float32 [H, W] canonical v of every pixel.
        half_width: float32 [H, 1] face outline half-width per row (``face_half_width``).
        ppu: pixels per face unit.

    Returns:
        The face.
    """
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

    relief = _upper_face(identity, u, v) + _nose(identity, u, v, ppu) + _cheeks_and_folds(identity, u, v)
    upper_top, lower_bottom, lip_profile = geo.lip_outlines(identity, u)
    mouth_v = identity.mouth_v
    # The dental arch bulges forward under the lips; the chin sits below.
    relief += 0.07 * gauss(u, v, 0.0, mouth_v, 0.45, 0.24)
    upper_lip = coverage(np.minimum(v - upper_top, mouth_v - v), ppu) * (lip_profile > 0)
    lower_lip = coverage(np.minimum(v - mouth_v, lower_bottom - v), ppu) * (lip_profile > 0)
    upper_round = np.clip((v - upper_top) / np.maximum(mouth_v - upper_top, 1e-3), 0.0, 1.0)
    lower_round = np.clip((v - mouth_v) / np.maximum(lower_bottom - mouth_v, 1e-3), 0.0, 1.0)
    relief += 0.045 * upper_lip * np.sin(np.pi * (0.3 + 0.7 * upper_round)) * lip_profile**0.5
    relief += 0.055 * lower_lip * np.sin(np.pi * (0.15 + 0.85 * lower_round) * 0.9) * lip_profile**0.5
    # Vermilion border: the skin just above the upper lip rolls over into it as a slight ridge.
    relief += 0.008 * np.exp(-0.5 * ((v - upper_top + 0.012) / 0.01) ** 2) * (lip_profile > 0.1)
    relief -= 0.03 * gauss(u, v, 0.0, mouth_v + identity.lower_lip + 0.07, 0.22, 0.04)  # mentolabial fold
    relief += 0.06 * gauss(u, v, 0.0, identity.v_chin - 0.17, 0.2, 0.12)  # chin
    relief = cv2.GaussianBlur(relief, (0, 0), max(0.6, 0.01 * ppu))

    nostrils = np.zeros(u.shape, np.float32)
    nose_v, nose_w = identity.nose_v, identity.nose_width
    for side in (-1.0, 1.0):
        # Seen from the front the nostrils are slanted crescents under the tip, partly hidden by the alae.
        du = u - side * nose_w * 0.48
        dv = v - nose_v - 0.078 + 0.25 * side * du
        shape = np.hypot(du / 0.052, dv / 0.02)
        nostrils = np.maximum(nostrils, coverage(0.02 * (1.0 - shape), ppu))
    height = (z + (relief - 0.025 * nostrils) * face).astype(np.float32)
    return FaceShape(face, height, upper_lip, lower_lip, lip_profile, nostrils)


def _upper_face(identity: FaceIdentity, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brow ridge, forehead, eye sockets, lids and under-eye area."""
    ex = identity.eye_x
    age = identity.age
    relief = np.zeros(u.shape, np.float32)
    relief += 0.065 * gauss(u, v, 0.0, identity.brow_v - 0.03, 0.6, 0.09)  # brow ridge
    relief += 0.03 * gauss(u, v, 0.0, -0.75, 0.45, 0.35)  # forehead
    relief -= 0.012 * gauss(u, v, 0.0, identity.brow_v + 0.07, 0.06, 0.06)  # glabella dip between the brows
    for side in (-1.0, 1.0):
        relief -= 0.12 * gauss(u, v, side * ex, 0.02, 0.2, 0.095)  # eye socket
        # The socket is deepest in the inner corner, between the eyeball and the nose bridge.
        relief -= 0.04 * gauss(u, v, side * (ex - 0.15), -0.04, 0.06, 0.06)
        relief += 0.045 * gauss(u, v, side * ex, -0.03, 0.16, 0.05)  # upper lid over the eyeball
        relief += 0.012 * gauss(u, v, side * ex, 0.085, 0.14, 0.02)  # lower lid's rim
        # Tear trough and, with age, a bag of fat above it.
        relief -= (0.004 + 0.025 * age) * gauss(u, v, side * (ex - 0.05), 0.2, 0.13, 0.025)
        relief += 0.025 * age * gauss(u, v, side * ex, 0.14, 0.14, 0.035)
        relief -= 0.035 * gauss(u, v, side * 0.86, -0.45, 0.12, 0.25)  # temple
    return relief


def _cheeks_and_folds(identity: FaceIdentity, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cheekbones, nasolabial folds, philtrum and, with age, marionette lines and jowls."""
    au = np.abs(u)
    nose_v, nose_w, mouth_v = identity.nose_v, identity.nose_width, identity.mouth_v
    age = identity.age
    relief = np.zeros(u.shape, np.float32)
    for side in (-1.0, 1.0):
        relief += 0.07 * gauss(u, v, side * 0.56, 0.27, 0.22, 0.17)  # cheekbone
        relief += 0.03 * gauss(u, v, side * 0.45, 0.55, 0.2, 0.2) * (1.0 - 0.5 * age)  # cheek fat pad
        # Nasolabial fold: a groove from the nose wing to beyond the mouth corner, cheek bulging above it.
        fold = geo.segment_distance(
            u, v, (side * (nose_w + 0.03), nose_v + 0.04), (side * (identity.mouth_half_width + 0.08), mouth_v + 0.12)
        )
        relief -= (0.006 + 0.02 * age) * np.exp(-0.5 * (fold / 0.03) ** 2)
        relief += (0.015 + 0.015 * age) * np.exp(-0.5 * (fold / 0.09) ** 2) * (au > nose_w)
        relief += 0.01 * gauss(u, v, side * 0.045, (nose_v + mouth_v) / 2 + 0.03, 0.02, 0.09)  # philtrum ridge
        # Marionette lines from the mouth corners down, and jowls beside them.
        corner = (side * identity.mouth_half_width, mouth_v + 0.02)
        marionette = geo.segment_distance(u, v, corner, (side * (identity.mouth_half_width + 0.06), mouth_v + 0.4))
        relief -= 0.02 * age * np.exp(-0.5 * (marionette / 0.02) ** 2)
        relief += 0.015 * age * gauss(u, v, side * 0.62, mouth_v + 0.35, 0.14, 0.15)
    return relief


def _nose(identity: FaceIdentity, u: np.ndarray, v: np.ndarray, ppu: float) -> np.ndarray:
    """Nasal bridge, tip, alae (wings) and the hollow under the tip."""
    au = np.abs(u)
    nose_v, nose_w = identity.nose_v, identity.nose_width
    # Bridge: a rounded ridge that rises and widens from between the eyes to the tip.
    along = smoothstep(-0.22, nose_v, v)
    half = 0.075 + 0.06 * along + 0.3 * nose_w * along**3
    cross = np.clip(1.0 - (au / half) ** 2, 0.0, 1.0) ** 1.1
    rise = (0.05 + 0.15 * along**1.3) * smoothstep(nose_v + 0.1, nose_v + 0.01, v) * smoothstep(-0.36, -0.16, v)
    relief = cv2.GaussianBlur((rise * cross).astype(np.float32), (0, 0), max(0.8, 0.025 * ppu))
    relief += 0.07 * gauss(u, v, 0.0, nose_v - 0.01, 0.08, 0.065)  # tip (lobule)
    for side in (-1.0, 1.0):
        relief += 0.085 * gauss(u, v, side * nose_w * 0.74, nose_v + 0.045, 0.065, 0.05)  # ala
        # The alar groove separates the wing from the cheek and from the tip.
        ring = np.hypot((u - side * nose_w * 0.74) / 0.085, (v - nose_v - 0.045) / 0.07)
        relief -= 0.014 * np.exp(-0.5 * ((ring - 1.0) / 0.18) ** 2) * (v > nose_v - 0.05)
    relief -= 0.025 * gauss(u, v, 0.0, nose_v + 0.115, 0.07, 0.03)  # columella shadow under the tip
    return relief
