"""What the camera does to the scene's light: lens (blur, vignetting, colour fringes), exposure, tone curve, noise.

Photographs read as photographs largely because of these imperfections: a perfectly sharp, noiseless,
evenly exposed image with a plain gamma curve looks computer-generated even when the subject is right.
Everything that does not depend on the frame (lookup tables, vignette, fringe maps, noise fields) is
computed once per renderer, so a frame costs a few array lookups.
"""

from __future__ import annotations

import cv2
import numpy as np

# Linear radiance (after exposure) covered by the tone lookup table; brighter values clip to white.
_LUT_RANGE = 6.0
_LUT_SIZE = 16384
_NOISE_FRAMES = 4


def srgb_to_linear(colour: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light (the standard piecewise curve).

    Args:
        colour: float array-like of any shape.

    Returns:
        float32 array of the same shape.
    """
    c = np.asarray(colour, np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def filmic(x: np.ndarray) -> np.ndarray:
    """Film-like tone curve (Narkowicz's ACES fit): a soft toe, a contrasty middle, highlights that roll off.

    Args:
        x: float array, exposed linear radiance (>= 0).

    Returns:
        float array in [0, 1], linear display light.
    """
    return np.clip((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0)


class Camera:
    """A fixed camera for one frame size: converts linear scene radiance to 8-bit sRGB like a real one.

    Args:
        width: frame width in pixels.
        height: frame height in pixels.
        rng: randomness for the camera's character (vignette strength, fringing, noise level) and noise.
        exposure: multiplier applied to scene radiance before the tone curve.
        saturation: colour saturation before the tone curve; a per-channel film curve adds saturation in the
            mid-tones (skin turns orange), which this takes back.
    """

    def __init__(
        self, width: int, height: int, rng: np.random.Generator, exposure: float = 0.8, saturation: float = 0.85
    ):
        self.width, self.height = int(width), int(height)
        size = float(min(width, height))
        x = np.linspace(0.0, _LUT_RANGE, _LUT_SIZE, dtype=np.float64)
        # The curve is scaled so that the top of the table is white (the fit approaches 1 only slowly).
        white = filmic(np.array(_LUT_RANGE))
        self._lut = np.round(_linear_to_srgb(filmic(x) / white) * 255.0).astype(np.uint8)
        self._lut_scale = np.float32(exposure * (_LUT_SIZE - 1) / _LUT_RANGE)
        # out = luma + saturation * (rgb - luma) as a 3x3 matrix on linear RGB (Rec. 709 luma weights).
        luma = np.array([0.2126, 0.7152, 0.0722], np.float32)
        self._colour = (saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), luma)).astype(np.float32)

        # Lens vignetting: cos^4-like falloff, a little stronger on cheap wide lenses.
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (0.5 * np.hypot(width, height)) ** 2
        strength = rng.uniform(0.25, 0.45)
        self.vignette = (1.0 / (1.0 + strength * r2) ** 2).astype(np.float32)

        # Lateral chromatic aberration: red is imaged slightly larger than green, blue slightly smaller, so
        # high-contrast edges away from the centre get colour fringes (about half a pixel at the corners).
        fringe = rng.uniform(0.5, 0.9) / (0.5 * np.hypot(width, height))
        self._fringe_maps = [
            ((cx + (xx - cx) * (1.0 + k)).astype(np.float32), (cy + (yy - cy) * (1.0 + k)).astype(np.float32))
            for k in (-fringe, fringe)  # sample red nearer the centre (magnified), blue further out
        ]

        # Sensor noise: photon shot noise grows with the square root of the signal, read noise is a floor;
        # demosaicing correlates it over neighbouring pixels and leaves some colour in it.
        level = rng.uniform(0.7, 1.3) * (256.0 / max(size, 128.0)) ** 0.25
        self._noise = []
        for _ in range(_NOISE_FRAMES):
            luma = rng.standard_normal((height, width, 1)).astype(np.float32)
            chroma = rng.standard_normal((height, width, 3)).astype(np.float32)
            field = cv2.GaussianBlur(0.8 * luma + 0.45 * chroma, (0, 0), 0.6)
            self._noise.append(field / (field.std() + 1e-6))
        signal = np.arange(256, dtype=np.float32) / 255.0
        self._noise_sigma = (level * (0.9 + 2.6 * np.sqrt(signal) * (1.0 - 0.6 * signal))).astype(np.float32)

    def lens(self, linear: np.ndarray, x0: int, y0: int) -> np.ndarray:
        """Colour response, vignetting and colour fringes on a window of the frame.

        Args:
            linear: float32 [h, w, 3] linear radiance of the window whose top-left pixel is (x0, y0).
            x0: window column offset.
            y0: window row offset.

        Returns:
            float32 [h, w, 3].
        """
        h, w = linear.shape[:2]
        out = cv2.transform(linear, self._colour) * self.vignette[y0 : y0 + h, x0 : x0 + w, None]
        for channel, (map_x, map_y) in zip((0, 2), self._fringe_maps):
            mx = map_x[y0 : y0 + h, x0 : x0 + w] - np.float32(x0)
            my = map_y[y0 : y0 + h, x0 : x0 + w] - np.float32(y0)
            out[..., channel] = cv2.remap(
                np.ascontiguousarray(out[..., channel]), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        return out

    def tone(self, linear: np.ndarray) -> np.ndarray:
        """Exposure, film-like tone curve and sRGB encoding.

        Args:
            linear: float32 [..., 3] linear radiance (after ``lens``).

        Returns:
            uint8 [..., 3] sRGB.
        """
        index = np.minimum(np.maximum(linear, 0.0) * self._lut_scale, _LUT_SIZE - 1).astype(np.int32)
        return self._lut[index]

    def add_noise(self, image: np.ndarray, t: float) -> np.ndarray:
        """Signal-dependent sensor noise; the pattern changes with time like a video sensor's.

        Args:
            image: uint8 [H, W, 3] sRGB.
            t: time in seconds.

        Returns:
            uint8 [H, W, 3].
        """
        field = self._noise[int(np.floor(t * 30.0)) % _NOISE_FRAMES]
        noisy = image.astype(np.float32) + field * self._noise_sigma[image]
        return np.clip(noisy + 0.5, 0.0, 255.0).astype(np.uint8)
