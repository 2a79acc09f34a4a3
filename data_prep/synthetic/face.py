"""Renderer of a synthetic talking head: jaw and lips, blinking eyes, head pose, shading, compositing.

Per frame the renderer (1) opens the mouth by displacing the lower face of the canonical layers and
filling the gap with teeth, tongue and the dark mouth cavity, (2) draws the eyeballs under lids that
close with ``blink``, (3) warps the canonical layers to the head pose (a 2.5-D warp that uses the
head's height so the nose moves more than the cheeks), (4) shades them and composites them over the
pre-rendered room, neck and shoulders.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_prep.synthetic import head_geometry as geo
from data_prep.synthetic.backdrop import render_backdrop
from data_prep.synthetic.head_model import build_head_layers
from data_prep.synthetic.identity import FaceIdentity, sample_identity
from data_prep.synthetic.lighting import Lighting, shade, to_srgb8
from data_prep.synthetic.noise import coverage, noise_1d, smoothstep

# Largest jaw drop (face units) at mouth_open = 1; the gap between the lips is a little less.
MAX_JAW_DROP = 0.24
# The head turns about a point in the neck (face units, canonical frame).
_PIVOT = np.array([0.0, 1.9, -0.9], np.float32)
# How the detectors frame a face, in face units (measured against MediaPipe's detector boxes).
_BOX_TOP = -0.66
_BOX_SIDE = 1.14
_GRAIN_FRAMES = 4


@dataclasses.dataclass(frozen=True)
class RenderedFrame:
    """One rendered frame.

    Attributes:
        image: uint8 [H, W, 3] RGB.
        face_box: float32 [4] (x0, y0, x1, y1) in pixels, brows to chin and cheek to cheek, as a face
            detector frames a face.
        lower_face_box: float32 [4] (x0, y0, x1, y1) in pixels: from just below the nose to the chin,
            jaw side to jaw side; inside the lower half of ``face_box``.
        mouth_center: float32 [2] (x, y) pixel position of the middle of the mouth.
    """

    image: np.ndarray
    face_box: np.ndarray
    lower_face_box: np.ndarray
    mouth_center: np.ndarray


class FaceRenderer:
    """Renders one synthetic person at a fixed frame size.

    Args:
        width: frame width in pixels (>= 64).
        height: frame height in pixels (>= 64).
        seed: identity seed; the same seed and arguments give bit-identical frames.
    """

    def __init__(self, width: int, height: int, seed: int):
        if width < 64 or height < 64:
            raise ValueError(f"frame must be at least 64x64, got {width}x{height}")
        self.width = int(width)
        self.height = int(height)
        self.seed = int(seed)
        self.identity: FaceIdentity = sample_identity(seed)
        ident = self.identity
        self.px_per_unit = ident.scale * min(width, height)
        self.anchor = np.array([ident.offset[0] * width, ident.offset[1] * height], np.float32)
        self.light = Lighting.from_key(ident.key_light, ident.key_colour)
        self._lens_blur = 0.0018 * min(width, height)

        self._static, self._grid = build_head_layers(ident, self.px_per_unit, seed)
        self._work = self._static.copy()
        # A smoothed height for inverting the pose warp: the fixed-point iteration needs gentle slopes.
        self._warp_height = cv2.GaussianBlur(self._static[..., geo.HEIGHT], (0, 0), 0.12 * self.px_per_unit)
        alpha_rows = np.nonzero(self._static[..., geo.ALPHA].max(axis=1) > 0)[0]
        alpha_cols = np.nonzero(self._static[..., geo.ALPHA].max(axis=0) > 0)[0]
        g = self._grid
        self._head_extent = (
            g.u0 + alpha_cols[0] / g.px_per_unit,
            g.u0 + alpha_cols[-1] / g.px_per_unit,
            g.v0 + alpha_rows[0] / g.px_per_unit,
            g.v0 + alpha_rows[-1] / g.px_per_unit + MAX_JAW_DROP,
        )

        self._backdrop_linear, self._body = render_backdrop(
            ident, width, height, (float(self.anchor[0]), float(self.anchor[1])), self.px_per_unit, self.light, seed
        )
        self._backdrop = to_srgb8(self._backdrop_linear)
        rng = np.random.default_rng([seed, 0x6A1])
        self._grain = [
            np.clip(rng.normal(0.0, 1.6, (height, width, 3)), -6, 6).astype(np.int16) for _ in range(_GRAIN_FRAMES)
        ]
        self._iris_noise = noise_1d(rng, 512, 6.0)
        self._setup_mouth()
        self._setup_eyes()

    # ------------------------------------------------------------------------------------------------
    def render(self, mouth_open: float, yaw: float, pitch: float, roll: float, blink: float, t: float) -> RenderedFrame:
        """Render one frame.

        Args:
            mouth_open: 0 (lips closed) .. 1 (jaw fully dropped).
            yaw: head turn in degrees; positive turns the face towards +x (the viewer's right).
            pitch: head nod in degrees; positive tilts the face down.
            roll: head tilt in degrees; positive rotates the head clockwise on screen.
            blink: 0 (eyes open) .. 1 (closed).
            t: time in seconds; drives gaze shifts and sensor grain.

        Returns:
            The frame and its boxes.
        """
        mouth_open = float(np.clip(mouth_open, 0.0, 1.0))
        blink = float(np.clip(blink, 0.0, 1.0))
        jaw = MAX_JAW_DROP * mouth_open
        self._open_mouth(mouth_open)
        self._draw_eyes(blink, self._gaze(t))

        rotation = _rotation(yaw, pitch, roll)
        x0, y0, x1, y1 = self._screen_roi(rotation)
        map_x, map_y = self._inverse_pose(rotation, x0, y0, x1, y1)
        head = cv2.remap(self._work, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = head[..., geo.ALPHA]
        normal = head[..., geo.NORMAL] @ rotation.T
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-6
        radiance = shade(
            head[..., geo.ALBEDO],
            normal,
            head[..., geo.SPECULAR],
            head[..., geo.SUBSURFACE],
            head[..., geo.OCCLUSION],
            head[..., geo.KEY_SHADOW],
            self.light,
        )
        under = self._backdrop_linear[y0:y1, x0:x1]
        # The head shades the neck and shoulders below it, offset away from the key light.
        shift = -np.asarray(self.light.key_direction[:2]) * 0.18 * self.px_per_unit + np.array([0.0, 0.1]) * (
            self.px_per_unit
        )
        shadow = cv2.warpAffine(
            alpha,
            np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32),
            (x1 - x0, y1 - y0),
            borderMode=cv2.BORDER_CONSTANT,
        )
        shadow = cv2.GaussianBlur(shadow, (0, 0), 0.08 * self.px_per_unit)
        under = under * (1.0 - 0.55 * shadow * self._body[y0:y1, x0:x1])[..., None]
        composite = radiance * alpha[..., None] + under * (1.0 - alpha[..., None])
        # A real lens and sensor never render a one-pixel-sharp edge; a slight blur removes the CG crispness.
        composite = cv2.GaussianBlur(composite, (0, 0), self._lens_blur)

        image = self._backdrop.copy()
        image[y0:y1, x0:x1] = to_srgb8(composite)
        grain = self._grain[int(np.floor(t * 30.0)) % _GRAIN_FRAMES]
        image = np.clip(image.astype(np.int16) + grain, 0, 255).astype(np.uint8)

        face_box, lower_box, mouth = self._boxes(rotation, jaw)
        return RenderedFrame(image=image, face_box=face_box, lower_face_box=lower_box, mouth_center=mouth)

    # ------------------------------------------------------------------------------------------------
    def project(self, u: np.ndarray, v: np.ndarray, z: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """Screen positions of canonical points.

        Args:
            u: float array, canonical u (face units).
            v: float array like ``u``, canonical v.
            z: float array like ``u``, height towards the camera.
            rotation: float32 [3, 3] head rotation.

        Returns:
            float32 [..., 2] (x, y) pixels.
        """
        points = np.stack([u, v, z], axis=-1).astype(np.float32) - _PIVOT
        rotated = points @ rotation.T + _PIVOT
        return (rotated[..., :2] * self.px_per_unit + self.anchor).astype(np.float32)

    def _boxes(self, rotation: np.ndarray, jaw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ident = self.identity
        chin = ident.v_chin + jaw
        v = np.linspace(_BOX_TOP, chin, 24, dtype=np.float32)
        side = np.maximum(geo.face_half_width(ident, np.minimum(v, ident.v_chin - 0.02)), 0.25) * _BOX_SIDE
        side = np.maximum(side, float(geo.face_half_width(ident, np.array(_BOX_TOP))) * _BOX_SIDE * (v < 0))
        u = np.concatenate([-side, side])
        vv = np.concatenate([v, v])
        z = np.full_like(u, 0.35)
        outline = self.project(u, vv, z, rotation)
        face_box = np.array([*outline.min(axis=0), *outline.max(axis=0)], np.float32)

        top = ident.nose_v + 0.1
        lv = np.linspace(top, chin, 12, dtype=np.float32)
        jaw_w = np.maximum(geo.face_half_width(ident, np.minimum(lv, ident.v_chin - 0.02)), 0.3) * 0.92
        lower = self.project(
            np.concatenate([-jaw_w, jaw_w]), np.concatenate([lv, lv]), np.full(24, 0.5, np.float32), rotation
        )
        lower_box = np.array([*lower.min(axis=0), *lower.max(axis=0)], np.float32)
        mid_y = 0.5 * (face_box[1] + face_box[3])
        lower_box[0] = max(lower_box[0], face_box[0])
        lower_box[2] = min(lower_box[2], face_box[2])
        lower_box[1] = max(lower_box[1], mid_y)
        lower_box[3] = min(lower_box[3], face_box[3])
        mouth = self.project(
            np.zeros(1, np.float32),
            np.array([ident.mouth_v + 0.4 * jaw], np.float32),
            np.full(1, 0.9, np.float32),
            rotation,
        )[0]
        return face_box, lower_box, mouth

    def _screen_roi(self, rotation: np.ndarray) -> tuple[int, int, int, int]:
        u_lo, u_hi, v_lo, v_hi = self._head_extent
        corners_u = np.array([u_lo, u_hi] * 4, np.float32)
        corners_v = np.array([v_lo, v_lo, v_hi, v_hi] * 2, np.float32)
        corners_z = np.array([0.0] * 4 + [1.3] * 4, np.float32)
        pts = self.project(corners_u, corners_v, corners_z, rotation)
        x0 = int(np.clip(np.floor(pts[:, 0].min()) - 2, 0, self.width - 1))
        y0 = int(np.clip(np.floor(pts[:, 1].min()) - 2, 0, self.height - 1))
        x1 = int(np.clip(np.ceil(pts[:, 0].max()) + 3, x0 + 1, self.width))
        y1 = int(np.clip(np.ceil(pts[:, 1].max()) + 3, y0 + 1, self.height))
        return x0, y0, x1, y1

    def _inverse_pose(self, rotation: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Canonical-grid pixel positions seen at each screen pixel of the ROI (float32 maps for remap)."""
        xs = (np.arange(x0, x1, dtype=np.float32) - self.anchor[0]) / self.px_per_unit
        ys = (np.arange(y0, y1, dtype=np.float32) - self.anchor[1]) / self.px_per_unit
        qx = xs[None, :] - _PIVOT[0]
        qy = ys[:, None] - _PIVOT[1]
        inv = np.linalg.inv(rotation[:2, :2].astype(np.float64)).astype(np.float32)
        depth = np.full((y1 - y0, x1 - x0), 0.5, np.float32)
        for _ in range(3):
            rx = qx - rotation[0, 2] * (depth - _PIVOT[2])
            ry = qy - rotation[1, 2] * (depth - _PIVOT[2])
            u = inv[0, 0] * rx + inv[0, 1] * ry + _PIVOT[0]
            v = inv[1, 0] * rx + inv[1, 1] * ry + _PIVOT[1]
            map_x, map_y = self._grid.to_pixels(u, v)
            depth = cv2.remap(self._warp_height, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return map_x, map_y

    # ------------------------------------------------------------------------------------------------
    def _setup_mouth(self) -> None:
        ident = self.identity
        g = self._grid
        self._mouth_rows = g.rows(ident.nose_v + 0.02, min(ident.v_chin + 0.6, geo.V_LAST))
        self._mouth_cols = g.cols(-1.25, 1.25)
        u, v = g.coords()
        self._mouth_u = np.ascontiguousarray(u[self._mouth_rows, self._mouth_cols])
        self._mouth_v = np.ascontiguousarray(v[self._mouth_rows, self._mouth_cols])
        mu = self._mouth_u
        _, _, profile = geo.lip_outlines(ident, mu)
        self._lens = profile**0.8
        jaw_edge = geo.face_half_width(ident, np.array(ident.mouth_v + 0.3))
        self._jaw_weight = smoothstep(float(jaw_edge) + 0.1, 0.35, np.abs(mu))
        self._teeth_phase = np.arcsin(np.clip(mu / (ident.mouth_half_width * 1.15), -1.0, 1.0))
        self._mouth_is_open = True  # forces the first restore
        self._open_mouth(0.0)

    def _lower_displacement(self, v_src: np.ndarray, jaw: float) -> np.ndarray:
        ident = self.identity
        blend = smoothstep(ident.mouth_v + ident.lower_lip, ident.mouth_v + ident.lower_lip + 0.25, v_src)
        fade = smoothstep(ident.v_chin + 0.55, ident.v_chin + 0.2, v_src)
        return jaw * (self._lens * (1.0 - blend) + self._jaw_weight * blend) * fade

    def _open_mouth(self, mouth_open: float) -> None:
        """Write the jaw-dropped lower face into the working layers."""
        rows, cols = self._mouth_rows, self._mouth_cols
        if mouth_open <= 1e-4:
            if self._mouth_is_open:
                self._work[rows, cols] = self._static[rows, cols]
                self._mouth_is_open = False
            return
        self._mouth_is_open = True
        ident = self.identity
        g = self._grid
        jaw = MAX_JAW_DROP * mouth_open
        raise_ = 0.03 * mouth_open
        u, v = self._mouth_u, self._mouth_v
        gap_top = ident.mouth_v - raise_ * self._lens
        gap_bottom = ident.mouth_v + 0.92 * jaw * self._lens

        # Invert the displacement column by column: the forward map v -> v + D(v) is monotone, so
        # interpolating it backwards gives the source row of every destination row. Columns are offset so
        # one flat interpolation serves them all.
        upper_falloff = smoothstep(ident.mouth_v - 0.35, ident.mouth_v, v)
        src_upper = v + raise_ * self._lens * upper_falloff
        forward = v + self._lower_displacement(v, 0.92 * jaw)
        stride = np.float32(100.0)
        column = np.arange(v.shape[1], dtype=np.float32)[None, :] * stride
        src_lower = np.interp((v + column).T.ravel(), (forward + column).T.ravel(), (v + column).T.ravel())
        src_lower = src_lower.reshape(v.shape[1], v.shape[0]).T - column
        src_lower = np.maximum(src_lower, ident.mouth_v).astype(np.float32)
        below = v >= 0.5 * (gap_top + gap_bottom)
        src_v = np.where(below, src_lower, np.minimum(src_upper, ident.mouth_v - 1e-3))
        map_x, map_y = g.to_pixels(u, src_v)
        # Read from the static layers (offset into the ROI) so the result never compounds over frames.
        static_roi = self._static
        moved = cv2.remap(static_roi, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        gap = coverage(np.minimum(v - gap_top, gap_bottom - v), g.px_per_unit) * (self._lens > 0.02)
        if gap.max() > 0:
            inside = self._mouth_interior(u, v, gap_top, gap_bottom, jaw)
            moved = moved * (1.0 - gap[..., None]) + inside * gap[..., None]
        self._work[rows, cols] = moved

    def _mouth_interior(
        self, u: np.ndarray, v: np.ndarray, gap_top: np.ndarray, gap_bottom: np.ndarray, jaw: float
    ) -> np.ndarray:
        """Layer values inside the open mouth: upper and lower teeth, tongue, dark cavity."""
        ident = self.identity
        out = np.zeros(u.shape + (geo.NUM_CHANNELS,), np.float32)
        depth_in = np.clip((v - gap_top) / np.maximum(gap_bottom - gap_top, 1e-3), 0.0, 1.0)
        side = np.clip(np.abs(u) / ident.mouth_half_width, 0.0, 1.0)
        cavity = np.array([0.2, 0.045, 0.04], np.float32) * (0.35 + 0.65 * side**1.5)[..., None]
        albedo = np.broadcast_to(cavity, u.shape + (3,)).copy()
        occlusion = np.full(u.shape, 0.4, np.float32)
        specular = np.zeros(u.shape, np.float32)

        # Tongue: a rounded mass on the floor of the mouth, visible once the jaw is well down.
        tongue_sd = 1.0 - np.hypot(u / (0.7 * ident.mouth_half_width), (v - gap_bottom) / max(0.6 * jaw, 1e-3))
        tongue = coverage(tongue_sd * 0.05, self.px_per_unit) * smoothstep(0.05, 0.15, jaw)
        tongue_colour = np.array([0.42, 0.12, 0.12], np.float32) * (0.6 + 0.4 * (1.0 - side))[..., None]
        albedo = albedo * (1.0 - tongue[..., None]) + tongue_colour * tongue[..., None]
        occlusion = occlusion * (1.0 - tongue) + 0.7 * tongue

        # Teeth: a band under the upper lip, separated into teeth that narrow round the dental arch.
        tooth_phase = self._teeth_phase / 0.19
        separation = 1.0 - 0.35 * np.exp(-0.5 * ((tooth_phase - np.round(tooth_phase)) / 0.08) ** 2)
        teeth_colour = np.array([0.55, 0.52, 0.45], np.float32)
        teeth_shade = (1.0 - 0.7 * side**2) * separation
        upper_len = 0.055 * np.clip(1.0 - side**3, 0.0, 1.0)
        upper_teeth = coverage(gap_top + upper_len - v, self.px_per_unit) * (side < 0.92)
        lip_shadow = 0.55 + 0.45 * smoothstep(0.0, 0.03, v - gap_top)
        lower_len = 0.05 * smoothstep(0.08, 0.2, jaw) * np.clip(1.0 - side**2, 0.0, 1.0)
        lower_teeth = coverage(v - (gap_bottom - lower_len), self.px_per_unit) * (side < 0.8)
        teeth = np.clip(upper_teeth + lower_teeth, 0.0, 1.0)
        tint = (teeth_shade * np.where(upper_teeth > 0, lip_shadow, 0.7))[..., None] * teeth_colour
        albedo = albedo * (1.0 - teeth[..., None]) + tint * teeth[..., None]
        occlusion = occlusion * (1.0 - teeth) + 0.85 * teeth
        specular = specular + 0.35 * teeth

        out[..., geo.ALBEDO] = albedo
        out[..., geo.ALPHA] = 1.0
        out[..., geo.HEIGHT] = ident.depth * 0.8
        out[..., 5] = 0.0
        out[..., 6] = -0.25 * (1.0 - depth_in)
        out[..., 7] = 1.0
        out[..., geo.SPECULAR] = specular
        out[..., geo.SUBSURFACE] = 0.0
        out[..., geo.OCCLUSION] = occlusion
        out[..., geo.KEY_SHADOW] = 0.5 + 0.5 * smoothstep(0.0, 0.35, depth_in)
        return out

    # ------------------------------------------------------------------------------------------------
    def _setup_eyes(self) -> None:
        ident = self.identity
        g = self._grid
        u, v = g.coords()
        self._eyes = []
        for side in (-1, 1):
            cx = side * ident.eye_x
            rows = g.rows(-0.14, 0.09)
            cols = g.cols(cx - ident.eye_half_width - 0.03, cx + ident.eye_half_width + 0.03)
            self._eyes.append(
                (side, rows, cols, np.ascontiguousarray(u[rows, cols]), np.ascontiguousarray(v[rows, cols]))
            )

    def _gaze(self, t: float) -> tuple[float, float]:
        """Where the eyes look: fixations of 0.6-2.2 s with small jumps, deterministic in (seed, t)."""
        period = 1.4
        index = int(np.floor(t / period))
        rng = np.random.default_rng([self.seed, 0x6A2E, index])
        return float(rng.uniform(-0.025, 0.025)), float(rng.uniform(-0.012, 0.01))

    def _draw_eyes(self, blink: float, gaze: tuple[float, float]) -> None:
        ident = self.identity
        ppu = self.px_per_unit
        iris_lin = np.square(np.array(ident.iris, np.float32))
        for side, rows, cols, u, v in self._eyes:
            layer = self._static[rows, cols].copy()
            top, bottom, inside = geo.eye_opening(ident, u, side, blink)
            opening = coverage(np.minimum(v - top, bottom - v), ppu) * (inside > 0.01)
            cx = side * ident.eye_x
            # Eyeball: a sphere, so the sclera darkens towards the corners.
            ball_r = 0.24
            du, dv = (u - cx) / ball_r, v / ball_r
            nz = np.sqrt(np.clip(1.0 - du**2 - dv**2, 0.05, 1.0))
            ball_normal = np.stack([du, dv, nz], axis=-1)
            ball_normal /= np.linalg.norm(ball_normal, axis=-1, keepdims=True)
            corner = np.clip(np.abs(u - cx) / ident.eye_half_width, 0.0, 1.0) ** 3
            sclera = np.array([0.6, 0.56, 0.52], np.float32) * (1.0 - 0.3 * corner)[..., None]
            sclera = sclera * (1.0 - corner[..., None] * np.array([0.0, 0.25, 0.22], np.float32))
            # Iris and pupil, shifted by the gaze.
            iu = u - cx - gaze[0]
            iv = v - 0.005 - gaze[1]
            r_iris = ident.eye_half_width * 0.5
            radius = np.hypot(iu, iv) / r_iris
            angle = np.arctan2(iv, iu)
            streaks = self._iris_noise[((angle + np.pi) / (2 * np.pi) * 511).astype(np.int32)]
            iris = iris_lin * (0.85 + 0.2 * streaks + 0.25 * smoothstep(0.9, 0.35, radius))[..., None]
            iris = iris * (1.0 - 0.7 * smoothstep(0.7, 1.0, radius))[..., None]  # limbal ring
            iris_cov = coverage((1.0 - radius) * r_iris, ppu)
            pupil_cov = coverage((0.42 - radius) * r_iris, ppu)
            eye = sclera * (1.0 - iris_cov[..., None]) + iris * iris_cov[..., None]
            eye = eye * (1.0 - pupil_cov[..., None]) + 0.004 * pupil_cov[..., None]
            # Catch light: the key light's reflection on the cornea.
            kx, ky = self.light.key_direction[0], self.light.key_direction[1]
            glint_r = np.hypot(iu - 0.45 * r_iris * kx, iv - 0.45 * r_iris * ky) / (0.2 * r_iris)
            glint = coverage((1.0 - glint_r) * 0.2 * r_iris, ppu) * 0.9
            eye = eye * (1.0 - glint[..., None]) + 1.6 * glint[..., None]
            # The upper lid shades the top of the eyeball.
            lid_shade = 0.45 + 0.55 * smoothstep(0.0, 0.05, v - top)

            o = opening[..., None]
            layer[..., geo.ALBEDO] = layer[..., geo.ALBEDO] * (1 - o) + eye * o
            layer[..., geo.NORMAL] = layer[..., geo.NORMAL] * (1 - o) + ball_normal * o
            layer[..., geo.SPECULAR] = layer[..., geo.SPECULAR] * (1 - opening) + 0.5 * opening
            layer[..., geo.SUBSURFACE] *= 1 - opening
            layer[..., geo.OCCLUSION] = layer[..., geo.OCCLUSION] * (1 - opening) + lid_shade * opening
            layer[..., geo.KEY_SHADOW] = layer[..., geo.KEY_SHADOW] * (1 - opening) + lid_shade * opening

            # Lash line along the upper lid (thicker towards the outer corner) and a softer lower lid line.
            outer = smoothstep(-0.5, 1.0, side * (u - cx) / ident.eye_half_width)
            lash_width = 0.012 + 0.012 * outer
            span = coverage(inside, ppu * 0.3)
            lash = coverage(lash_width - np.abs(v - (top - 0.3 * lash_width)), ppu) * span
            lower = coverage(0.007 - np.abs(v - bottom - 0.004), ppu) * span * 0.35
            dark = np.clip(lash + lower, 0.0, 1.0)[..., None]
            layer[..., geo.ALBEDO] = layer[..., geo.ALBEDO] * (1.0 - 0.92 * dark)
            layer[..., geo.SPECULAR] *= 1.0 - dark[..., 0]
            self._work[rows, cols] = layer


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation (degrees) as a float32 [3, 3] matrix applied to canonical points: roll . pitch . yaw."""
    y, p, r = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return (rz @ rx @ ry).astype(np.float32)
