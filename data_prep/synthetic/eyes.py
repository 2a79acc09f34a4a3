"""Eyeballs, lid margins and lashes, drawn into the canonical layers every frame (they move with blink and gaze).

What makes eyes read as real at a few dozen pixels: the sclera is not white but a shaded, slightly pink
off-white that darkens towards the corners and under the upper lid; the iris is large, dark-rimmed and
fibrous; the upper lid and its lashes cast a shadow over the top of the eyeball; the cornea shows a sharp
reflection of the key light (a catchlight) and the lower lid a thin wet line.
"""

from __future__ import annotations

import cv2
import numpy as np

from data_prep.synthetic import head_geometry as geo
from data_prep.synthetic.camera import srgb_to_linear
from data_prep.synthetic.head_geometry import CanonicalGrid
from data_prep.synthetic.identity import FaceIdentity
from data_prep.synthetic.lighting import Lighting
from data_prep.synthetic.noise import coverage, noise_1d, smoothstep

_BALL_RADIUS = 0.24  # eyeball radius, face units (about 12 mm)
_CORNEA_RADIUS = 0.11  # radius of curvature of the cornea, which sets where the catchlight sits
_IRIS_SCALE = 0.4  # iris radius as a share of the eye's half-width


class EyeDrawer:
    """Draws both eyes of one person; everything that does not change with blink or gaze is precomputed.

    Args:
        identity: the person.
        grid: the canonical grid.
        light: the light rig (catchlight position and size).
        rng: texture randomness.
    """

    def __init__(self, identity: FaceIdentity, grid: CanonicalGrid, light: Lighting, rng: np.random.Generator):
        self.identity = identity
        self.ppu = grid.px_per_unit
        self.r_iris = identity.eye_half_width * _IRIS_SCALE
        u, v = grid.coords()
        self._eyes = []
        for side in (-1, 1):
            cx = side * identity.eye_x
            rows = grid.rows(-0.15, 0.1)
            cols = grid.cols(cx - identity.eye_half_width - 0.04, cx + identity.eye_half_width + 0.04)
            eu, ev = np.ascontiguousarray(u[rows, cols]), np.ascontiguousarray(v[rows, cols])
            self._eyes.append((side, rows, cols, eu, ev, self._eyeball(side, eu, ev, rng)))
        self._iris = self._iris_patch(rng)
        # Clumps of lashes along the lid: a 1-D texture indexed by position along the eye.
        self._lash_noise = noise_1d(rng, 256, 3.0)
        self._mascara = 1.0 if not identity.masculine and rng.uniform() < 0.6 else 0.0
        key = light.half_vector
        self._catch_offset = (_CORNEA_RADIUS * float(key[0]), _CORNEA_RADIUS * float(key[1]))
        self._catch_size = 0.012 + 0.03 * light.key_softness

    def _eyeball(self, side: int, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Static parts of one eyeball: sclera colour, normals, the caruncle."""
        ident = self.identity
        cx = side * ident.eye_x
        du, dv = (u - cx) / _BALL_RADIUS, v / _BALL_RADIUS
        nz = np.sqrt(np.clip(1.0 - du**2 - dv**2, 0.05, 1.0))
        normal = np.stack([du, dv, nz], axis=-1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        x = (u - cx) / ident.eye_half_width  # -1 .. 1 across the eye
        corner = np.clip(np.abs(x), 0.0, 1.0) ** 2.5
        # Sclera: bluish-white in the middle, pinker and darker towards the corners, with fine vessels.
        sclera = srgb_to_linear((0.74, 0.71, 0.68)) * (1.0 - 0.45 * corner)[..., None]
        vessels = np.clip(cv2.GaussianBlur(rng.standard_normal(u.shape).astype(np.float32), (0, 0), 0.7), 0, None)
        pink = np.clip(0.35 * corner + 0.2 * vessels * corner, 0.0, 1.0)
        sclera = sclera * (1.0 - pink[..., None] * np.array([0.05, 0.25, 0.25], np.float32))
        # Caruncle: the pink fold in the inner corner.
        inner = -side  # the inner corner lies towards the midline
        caruncle = 0.8 * np.exp(-0.5 * (((x - 0.92 * inner) / 0.08) ** 2 + ((v - 0.01) / 0.025) ** 2))
        sclera = sclera * (1.0 - caruncle[..., None]) + srgb_to_linear((0.75, 0.45, 0.45)) * caruncle[..., None]
        return {"sclera": sclera.astype(np.float32), "normal": normal.astype(np.float32), "caruncle": caruncle}

    def _iris_patch(self, rng: np.random.Generator) -> np.ndarray:
        """Iris and pupil on a square patch centred on the pupil: float32 [n, n, 4] (linear RGB, coverage)."""
        r = self.r_iris
        n = int(np.ceil(2.4 * r * self.ppu)) | 1
        half = (n - 1) / 2.0
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        iu, iv = (xx - half) / self.ppu, (yy - half) / self.ppu
        radius = np.hypot(iu, iv) / r
        angle = np.arctan2(iv, iu)
        fibres = noise_1d(rng, 720, 2.0)[((angle + np.pi) / (2 * np.pi) * 719).astype(np.int32)]
        spokes = noise_1d(rng, 180, 2.0)[((angle + np.pi) / (2 * np.pi) * 179).astype(np.int32)]
        base = srgb_to_linear(self.identity.iris)
        # A warmer, lighter ring around the pupil (the collarette) for every colour of eye.
        inner = srgb_to_linear(np.clip(np.asarray(self.identity.iris) * np.array([1.35, 1.15, 0.8]), 0, 1))
        ring = smoothstep(0.75, 0.4, radius)[..., None]
        colour = base * (1.0 - ring) + inner * ring
        colour = colour * (0.85 + 0.22 * fibres + 0.12 * spokes)[..., None]
        colour = colour * (1.0 - 0.75 * smoothstep(0.72, 1.0, radius))[..., None]  # dark limbal ring
        crypts = np.clip(cv2.GaussianBlur(rng.standard_normal((n, n)).astype(np.float32), (0, 0), 1.0) - 0.4, 0, 1)
        colour = colour * (1.0 - 0.4 * crypts * smoothstep(0.4, 0.6, radius))[..., None]
        pupil = coverage((0.38 - radius) * r, self.ppu)
        colour = colour * (1.0 - pupil[..., None]) + 0.003 * pupil[..., None]
        iris_cov = coverage((1.0 - radius) * r, self.ppu)
        return np.concatenate([colour, iris_cov[..., None]], axis=-1).astype(np.float32)

    def draw(self, static: np.ndarray, work: np.ndarray, blink: float, gaze: tuple[float, float]) -> None:
        """Write both eyes for this blink and gaze into the working layers.

        Args:
            static: float32 [H, W, NUM_CHANNELS] layers with closed-lid skin over the eyes.
            work: float32 [H, W, NUM_CHANNELS] layers to draw into (same grid).
            blink: 0 open .. 1 closed.
            gaze: (u, v) offset of the irises, face units.
        """
        ident = self.identity
        ppu = self.ppu
        n = self._iris.shape[0]
        for side, rows, cols, u, v, ball in self._eyes:
            layer = static[rows, cols].copy()
            top, bottom, inside = geo.eye_opening(ident, u, side, blink)
            opening = coverage(np.minimum(v - top, bottom - v), ppu) * (inside > 0.01)
            cx = side * ident.eye_x

            # Iris: the pre-drawn patch translated to the gaze (its centre sits slightly above the pupil line).
            centre_x = (cx + gaze[0] - float(u[0, 0])) * ppu
            centre_y = (0.005 + gaze[1] - float(v[0, 0])) * ppu
            shift = np.array([[1, 0, centre_x - (n - 1) / 2.0], [0, 1, centre_y - (n - 1) / 2.0]], np.float32)
            iris = cv2.warpAffine(self._iris, shift, (u.shape[1], u.shape[0]), flags=cv2.INTER_LINEAR)
            iris_cov = iris[..., 3:4]
            eye = ball["sclera"] * (1.0 - iris_cov) + iris[..., :3]
            # Upper lid and lashes shade the top of the eyeball; the corners sit deeper in the socket.
            lid_shade = 0.4 + 0.6 * smoothstep(0.0, 0.045, v - top)
            lid_shade *= 1.0 - 0.35 * np.clip(np.abs(u - cx) / ident.eye_half_width, 0, 1) ** 3

            # Catchlight: the key light mirrored in the cornea, a soft-edged spot whose size is the light's.
            gx, gy = cx + 0.6 * gaze[0] + self._catch_offset[0], 0.005 + 0.6 * gaze[1] + self._catch_offset[1]
            spot = np.hypot(u - gx, (v - gy) * 1.2) / self._catch_size
            catchlight = smoothstep(1.0, 0.6, spot) * smoothstep(-0.01, 0.02, v - top)

            o = opening[..., None]
            layer[..., geo.ALBEDO] = layer[..., geo.ALBEDO] * (1 - o) + eye * o
            layer[..., geo.NORMAL] = layer[..., geo.NORMAL] * (1 - o) + ball["normal"] * o
            layer[..., geo.SPECULAR] = layer[..., geo.SPECULAR] * (1 - opening) + 0.15 * opening
            layer[..., geo.GLOSS] = layer[..., geo.GLOSS] * (1 - opening) + opening
            layer[..., geo.SHEEN] = layer[..., geo.SHEEN] * (1 - opening) + 2.5 * catchlight * opening
            layer[..., geo.SUBSURFACE] *= 1 - opening
            layer[..., geo.OCCLUSION] = layer[..., geo.OCCLUSION] * (1 - opening) + lid_shade * opening
            layer[..., geo.KEY_SHADOW] = layer[..., geo.KEY_SHADOW] * (1 - opening) + lid_shade * opening
            self._lid_margins(layer, u, v, side, top, bottom, inside)
            work[rows, cols] = layer

    def _lid_margins(
        self,
        layer: np.ndarray,
        u: np.ndarray,
        v: np.ndarray,
        side: int,
        top: np.ndarray,
        bottom: np.ndarray,
        inside: np.ndarray,
    ) -> None:
        """Upper lashes in clumps (longer towards the outer corner), the lower lid's wet line and sparse lashes."""
        ident = self.identity
        ppu = self.ppu
        cx = side * ident.eye_x
        along = np.clip((u - cx) / ident.eye_half_width * 0.5 + 0.5, 0.0, 1.0)  # 0..1 across the eye
        clumps = self._lash_noise[(along * 255).astype(np.int32)]
        outer = smoothstep(-0.5, 1.0, side * (u - cx) / ident.eye_half_width)
        length = (0.014 + 0.012 * outer + 0.008 * self._mascara) * (1.0 + 0.25 * clumps)
        span = coverage(inside, ppu * 0.3)
        above = v - (top - length)
        lash = coverage(np.minimum(above, top + 0.15 * length - v), ppu) * span
        lash *= np.clip(0.75 + 0.25 * clumps + 0.2 * self._mascara, 0.0, 1.0)
        lower_line = np.abs(v - bottom - 0.006)
        lower = coverage(0.005 - lower_line, ppu) * span * (0.25 + 0.15 * self._mascara)
        dark = np.clip(lash + lower, 0.0, 0.95)[..., None]
        layer[..., geo.ALBEDO] = layer[..., geo.ALBEDO] * (1.0 - dark) + 0.01 * dark
        layer[..., geo.SPECULAR] *= 1.0 - dark[..., 0]
        # Waterline: the wet inner rim of the lower lid catches a thin highlight.
        wet = coverage(0.004 - np.abs(v - bottom + 0.002), ppu) * span * 0.6
        layer[..., geo.GLOSS] = np.maximum(layer[..., geo.GLOSS], wet)
        layer[..., geo.SPECULAR] += 0.8 * wet
