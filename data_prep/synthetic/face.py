"""Renderer of a synthetic talking head: jaw and lips, blinking eyes, head pose, shading, compositing.

Per frame the renderer (1) opens the mouth by displacing the lower face of the canonical layers and
filling the gap with teeth, tongue and the dark mouth cavity, (2) draws the eyeballs under lids that
close with ``blink``, (3) warps the canonical layers to the head pose (a 2.5-D warp that uses the
head's height so the nose moves more than the cheeks), (4) shades them (soft key light, subsurface
scattering, Fresnel specular; ``lighting``) and composites them over the pre-rendered room, neck and
shoulders, (5) passes the result through a camera model (lens blur, vignetting, colour fringes, film tone
curve, sensor noise; ``camera``).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_prep.synthetic import head_geometry as geo
from data_prep.synthetic.backdrop import render_backdrop
from data_prep.synthetic.camera import Camera, srgb_to_linear
from data_prep.synthetic.eyes import EyeDrawer
from data_prep.synthetic.head_model import build_head_layers
from data_prep.synthetic.identity import FaceIdentity, sample_identity
from data_prep.synthetic.lighting import Lighting, shade_layers
from data_prep.synthetic.mouth import LOWER_FACE_TOP, MAX_JAW_DROP, MouthRig

# The head turns about a point in the neck (face units, canonical frame).
_PIVOT = np.array([0.0, 1.9, -0.9], np.float32)
# How the detectors frame a face, in face units (measured against MediaPipe's detector boxes).
_BOX_TOP = -0.66
_BOX_SIDE = 1.14
# Subsurface scattering radius of red light under the skin (about 3 mm), face units.
_SCATTER = 0.04
# Lens softness: even a good lens and sensor never render a one-pixel-sharp edge (sigma, share of frame size).
_LENS_BLUR = 0.0018


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
        zoom: camera zoom about the frame centre: 1 frames head and shoulders (the face box about 0.43 of
            the frame height), 1.5 a face-centred crop like the ones a lip-sync model is trained on.
    """

    def __init__(self, width: int, height: int, seed: int, zoom: float = 1.0):
        if width < 64 or height < 64:
            raise ValueError(f"frame must be at least 64x64, got {width}x{height}")
        if not 0.5 <= zoom <= 2.0:
            raise ValueError(f"zoom must be in [0.5, 2], got {zoom}")
        self.width = int(width)
        self.height = int(height)
        self.seed = int(seed)
        self.identity: FaceIdentity = sample_identity(seed)
        ident = self.identity
        self.px_per_unit = ident.scale * min(width, height) * zoom
        centre = np.array([0.5 * width, 0.5 * height])
        offset = np.array([ident.offset[0] * width, ident.offset[1] * height])
        self.anchor = (centre + zoom * (offset - centre)).astype(np.float32)
        self.light = _lighting(ident)
        self._lens_blur = _LENS_BLUR * min(width, height)
        self.camera = Camera(width, height, np.random.default_rng([seed, 0xCA3]), exposure=ident.exposure)

        self._static, self._grid = build_head_layers(ident, self.px_per_unit, seed)
        self._work = self._static.copy()
        self._rest_alpha = np.ascontiguousarray(self._static[..., geo.ALPHA])
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

        # The head shades the neck below it, offset away from the key light (pixels).
        key = self.light.key_direction
        self._shadow_shift = (-key[:2] / max(float(key[2]), 0.3) * 0.3 + np.array([0.0, 0.08])) * self.px_per_unit
        self._shadow_reach = float(max(self._shadow_shift[1], 0.0) + 0.25 * self.px_per_unit)

        self._backdrop_linear, self._body = render_backdrop(
            ident, width, height, (float(self.anchor[0]), float(self.anchor[1])), self.px_per_unit, self.light, seed
        )
        self._backdrop_linear = cv2.GaussianBlur(self._backdrop_linear, (0, 0), self._lens_blur)
        self._backdrop = self.camera.tone(self.camera.lens(self._backdrop_linear, 0, 0))
        rng = np.random.default_rng([seed, 0x6A1])
        self._mouth = MouthRig(ident, self._grid, rng)
        self._mouth.apply(self._static, self._work, 0.0)
        self._eyes = EyeDrawer(ident, self._grid, self.light, rng)

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
        self._mouth.apply(self._static, self._work, mouth_open)
        self._eyes.draw(self._static, self._work, blink, self._gaze(t))

        rotation = _rotation(yaw, pitch, roll)
        x0, y0, x1, y1 = self._screen_roi(rotation)
        map_x, map_y = self._inverse_pose(rotation, x0, y0, x1, y1)
        head = cv2.remap(self._work, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = head[..., geo.ALPHA]
        normal = head[..., geo.NORMAL] @ rotation.T
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-6
        radiance = shade_layers(head, normal, self.light, _SCATTER * self.px_per_unit)
        under = self._backdrop_linear[y0:y1, x0:x1]
        # The head shades the neck and shoulders below it, offset away from the key light.
        shift = self._shadow_shift
        # The shadow is cast by the closed-mouth silhouette: a dropping chin would otherwise move the shadow
        # edge on the neck, and everything the mouth changes must stay inside the lower-face box (the region
        # a lip-sync model inpaints).
        rest_alpha = cv2.remap(self._rest_alpha, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        shadow = cv2.warpAffine(
            rest_alpha,
            np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32),
            (x1 - x0, y1 - y0),
            borderMode=cv2.BORDER_CONSTANT,
        )
        shadow = cv2.GaussianBlur(shadow, (0, 0), 0.08 * self.px_per_unit)
        under = under * (1.0 - 0.7 * shadow * self._body[y0:y1, x0:x1])[..., None]
        composite = radiance * alpha[..., None] + under * (1.0 - alpha[..., None])
        composite = cv2.GaussianBlur(composite, (0, 0), self._lens_blur)

        image = self._backdrop.copy()
        image[y0:y1, x0:x1] = self.camera.tone(self.camera.lens(composite, x0, y0))
        image = self.camera.add_noise(image, t)

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

        top = ident.nose_v + LOWER_FACE_TOP
        lv = np.linspace(top, chin, 12, dtype=np.float32)
        # Jaw side to jaw side: the jaw line itself moves as the mouth opens.
        jaw_w = np.maximum(geo.face_half_width(ident, np.minimum(lv, ident.v_chin - 0.02)), 0.3)
        # The surface lies between these heights: the box holds both projections, so a nod cannot move an
        # opening mouth's pixels past its edge, plus the lens blur, colour fringes and edge anti-aliasing.
        u2, v2 = np.concatenate([-jaw_w, jaw_w]), np.concatenate([lv, lv])
        lower = np.concatenate([self.project(u2, v2, np.full(24, z, np.float32), rotation) for z in (0.3, 1.0)], axis=0)
        pad = 2.0 + 3.0 * self._lens_blur
        lower_box = np.array([*(lower.min(axis=0) - pad), *(lower.max(axis=0) + pad)], np.float32)
        # The face box holds the lower-face box whole, chin edge included.
        face_box[3] = max(face_box[3], lower_box[3])
        mid_y = 0.5 * (face_box[1] + face_box[3])
        lower_box[0] = max(lower_box[0], face_box[0])
        lower_box[2] = min(lower_box[2], face_box[2])
        lower_box[1] = max(lower_box[1], mid_y)
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
        # The head's shadow on the neck reaches below the head itself.
        y1 = int(np.clip(np.ceil(pts[:, 1].max() + self._shadow_reach) + 3, y0 + 1, self.height))
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
    def _gaze(self, t: float) -> tuple[float, float]:
        """Where the eyes look: fixations of 0.6-2.2 s with small jumps, deterministic in (seed, t)."""
        period = 1.4
        index = int(np.floor(t / period))
        rng = np.random.default_rng([self.seed, 0x6A2E, index])
        return float(rng.uniform(-0.025, 0.025)), float(rng.uniform(-0.012, 0.01))


def _lighting(identity: FaceIdentity) -> Lighting:
    """The identity's light rig; the room's and the clothes' colours tint the ambient and bounce light."""
    top, bottom = (srgb_to_linear(c) for c in identity.background)
    return Lighting.from_key(
        identity.key_light,
        identity.key_colour,
        softness=identity.key_softness,
        room=tuple(0.5 * (top + bottom)),
        ground=tuple(srgb_to_linear(identity.clothing) + 0.05),
        rim=identity.rim_light,
    )


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation (degrees) as a float32 [3, 3] matrix applied to canonical points: roll . pitch . yaw."""
    y, p, r = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return (rz @ rx @ ry).astype(np.float32)
