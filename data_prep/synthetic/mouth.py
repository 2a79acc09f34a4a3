"""The speaking mouth: the jaw drop that deforms the lower face, and what shows between the lips.

Opening the mouth displaces the lower face of the canonical layers downwards (most at the lips, fading
towards the jaw line) and fills the gap with teeth, tongue and the dark mouth cavity.
"""

from __future__ import annotations

import cv2
import numpy as np

from data_prep.synthetic import head_geometry as geo
from data_prep.synthetic.camera import srgb_to_linear
from data_prep.synthetic.head_geometry import CanonicalGrid
from data_prep.synthetic.identity import FaceIdentity
from data_prep.synthetic.noise import coverage, smoothstep

# Largest jaw drop (face units) at mouth_open = 1; the gap between the lips is a little less.
MAX_JAW_DROP = 0.24
# Top of the lower-face box below the nose tip (face units): the mouth rig changes nothing above it.
LOWER_FACE_TOP = 0.1


class MouthRig:
    """Opens and closes one person's mouth in the canonical layers.

    Args:
        identity: the person.
        grid: the canonical grid.
        rng: randomness of the teeth's shade.
    """

    def __init__(self, identity: FaceIdentity, grid: CanonicalGrid, rng: np.random.Generator):
        self.identity = identity
        self.grid = grid
        self.rows = grid.rows(identity.nose_v + 0.02, min(identity.v_chin + 0.6, geo.V_LAST))
        self.cols = grid.cols(-1.25, 1.25)
        u, v = grid.coords()
        self._u = np.ascontiguousarray(u[self.rows, self.cols])
        self._v = np.ascontiguousarray(v[self.rows, self.cols])
        _, _, profile = geo.lip_outlines(identity, self._u)
        self._lens = profile**0.8
        jaw_edge = geo.face_half_width(identity, np.array(identity.mouth_v + 0.3))
        # The jaw moves nothing beyond the face's edge (hair hanging beside the jaw stays put), which keeps a
        # mouth's every change inside the lower-face box.
        self._jaw_weight = smoothstep(float(jaw_edge), 0.35, np.abs(self._u))
        self._teeth_phase = np.arcsin(np.clip(self._u / (identity.mouth_half_width * 1.15), -1.0, 1.0))
        # Teeth are never paper white: ivory to yellowish, a little greyer with age.
        ivory = np.array([0.8, 0.76, 0.66]) * rng.uniform(0.85, 1.0) - np.array([0.0, 0.02, 0.06]) * identity.age
        self._teeth_colour = srgb_to_linear(np.clip(ivory, 0.0, 1.0))
        self._is_open = True  # forces the first restore

    def apply(self, static: np.ndarray, work: np.ndarray, mouth_open: float) -> None:
        """Write the lower face for this mouth opening into the working layers.

        Args:
            static: float32 [H, W, NUM_CHANNELS] layers with the mouth closed.
            work: float32 [H, W, NUM_CHANNELS] working layers (same grid).
            mouth_open: 0 (lips closed) .. 1 (jaw fully dropped).
        """
        rows, cols = self.rows, self.cols
        if mouth_open <= 1e-4:
            if self._is_open:
                work[rows, cols] = static[rows, cols]
                self._is_open = False
            return
        self._is_open = True
        ident = self.identity
        jaw = MAX_JAW_DROP * mouth_open
        raise_ = 0.03 * mouth_open
        u, v = self._u, self._v
        gap_top = ident.mouth_v - raise_ * self._lens
        gap_bottom = ident.mouth_v + 0.92 * jaw * self._lens

        # Invert the displacement column by column: the forward map v -> v + D(v) is monotone, so
        # interpolating it backwards gives the source row of every destination row. Columns are offset so
        # one flat interpolation serves them all.
        # The upper lip lifts, fading out before the top of the lower-face box (nose_v + LOWER_FACE_TOP) so that
        # everything a mouth changes stays inside that box: a dub's ground truth differs from the source only there.
        upper_falloff = smoothstep(max(ident.mouth_v - 0.35, ident.nose_v + LOWER_FACE_TOP), ident.mouth_v, v)
        src_upper = v + raise_ * self._lens * upper_falloff
        # float64: in float32 the column offsets (thousands) would round v by ~1e-3 face units, shifting pixels
        # the mouth does not move (hair beside the jaw) by a hundredth of a pixel.
        v64 = v.astype(np.float64)
        forward = v64 + self._lower_displacement(v, 0.92 * jaw)
        column = np.arange(v.shape[1], dtype=np.float64)[None, :] * 100.0
        src_lower = np.interp((v64 + column).T.ravel(), (forward + column).T.ravel(), (v64 + column).T.ravel())
        src_lower = src_lower.reshape(v.shape[1], v.shape[0]).T - column
        src_lower = np.maximum(src_lower, ident.mouth_v).astype(np.float32)
        below = v >= 0.5 * (gap_top + gap_bottom)
        src_v = np.where(below, src_lower, np.minimum(src_upper, ident.mouth_v - 1e-3))
        map_x, map_y = self.grid.to_pixels(u, src_v)
        # Read from the static layers so the result never compounds over frames.
        moved = cv2.remap(static, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        gap = coverage(np.minimum(v - gap_top, gap_bottom - v), self.grid.px_per_unit) * (self._lens > 0.02)
        if gap.max() > 0:
            inside = self._interior(gap_top, gap_bottom, jaw)
            moved = moved * (1.0 - gap[..., None]) + inside * gap[..., None]
        work[rows, cols] = moved

    def _lower_displacement(self, v_src: np.ndarray, jaw: float) -> np.ndarray:
        ident = self.identity
        blend = smoothstep(ident.mouth_v + ident.lower_lip, ident.mouth_v + ident.lower_lip + 0.25, v_src)
        fade = smoothstep(ident.v_chin + 0.55, ident.v_chin + 0.2, v_src)
        return jaw * (self._lens * (1.0 - blend) + self._jaw_weight * blend) * fade

    def _interior(self, gap_top: np.ndarray, gap_bottom: np.ndarray, jaw: float) -> np.ndarray:
        """Layer values inside the open mouth, float32 [h, w, NUM_CHANNELS]: teeth, tongue, dark cavity."""
        ident = self.identity
        u, v = self._u, self._v
        ppu = self.grid.px_per_unit
        out = np.zeros(u.shape + (geo.NUM_CHANNELS,), np.float32)
        depth_in = np.clip((v - gap_top) / np.maximum(gap_bottom - gap_top, 1e-3), 0.0, 1.0)
        side = np.clip(np.abs(u) / ident.mouth_half_width, 0.0, 1.0)
        cavity = np.array([0.12, 0.025, 0.022], np.float32) * (0.3 + 0.7 * side**1.5)[..., None]
        albedo = np.broadcast_to(cavity, u.shape + (3,)).copy()
        occlusion = np.full(u.shape, 0.35, np.float32)
        specular = np.zeros(u.shape, np.float32)

        # Tongue: a rounded mass on the floor of the mouth, visible once the jaw is well down.
        tongue_sd = 1.0 - np.hypot(u / (0.7 * ident.mouth_half_width), (v - gap_bottom) / max(0.6 * jaw, 1e-3))
        tongue = coverage(tongue_sd * 0.05, ppu) * smoothstep(0.05, 0.15, jaw)
        tongue_colour = np.array([0.38, 0.1, 0.1], np.float32) * (0.55 + 0.45 * (1.0 - side))[..., None]
        albedo = albedo * (1.0 - tongue[..., None]) + tongue_colour * tongue[..., None]
        occlusion = occlusion * (1.0 - tongue) + 0.65 * tongue
        specular = specular + 0.3 * tongue

        # Teeth: a band under the upper lip, separated into teeth that narrow round the dental arch.
        tooth_phase = self._teeth_phase / 0.19
        separation = 1.0 - 0.35 * np.exp(-0.5 * ((tooth_phase - np.round(tooth_phase)) / 0.08) ** 2)
        teeth_shade = (1.0 - 0.75 * side**2) * separation
        upper_len = 0.055 * np.clip(1.0 - side**3, 0.0, 1.0)
        upper_teeth = coverage(gap_top + upper_len - v, ppu) * (side < 0.92)
        lip_shadow = 0.45 + 0.55 * smoothstep(0.0, 0.03, v - gap_top)
        lower_len = 0.05 * smoothstep(0.08, 0.2, jaw) * np.clip(1.0 - side**2, 0.0, 1.0)
        lower_teeth = coverage(v - (gap_bottom - lower_len), ppu) * (side < 0.8)
        teeth = np.clip(upper_teeth + lower_teeth, 0.0, 1.0)
        tint = (teeth_shade * np.where(upper_teeth > 0, lip_shadow, 0.6))[..., None] * self._teeth_colour
        albedo = albedo * (1.0 - teeth[..., None]) + tint * teeth[..., None]
        occlusion = occlusion * (1.0 - teeth) + 0.65 * teeth
        specular = specular + 0.5 * teeth

        out[..., geo.ALBEDO] = albedo
        out[..., geo.ALPHA] = 1.0
        out[..., geo.HEIGHT] = ident.depth * 0.8
        out[..., geo.NORMAL] = np.stack(
            [np.zeros_like(depth_in), -0.25 * (1.0 - depth_in), np.ones_like(depth_in)], axis=-1
        )
        out[..., geo.SPECULAR] = specular
        out[..., geo.GLOSS] = 0.8
        out[..., geo.OCCLUSION] = occlusion
        # The upper lip shades the top of the opening.
        out[..., geo.KEY_SHADOW] = 0.4 + 0.6 * smoothstep(0.0, 0.35, depth_in)
        return out
