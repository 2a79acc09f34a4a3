"""Crop windows, their place in the stored (possibly rotated) frame, and the YUV ↔ RGB conversion of a region.

The dub never converts a whole source frame: it cuts the face window out of the decoded 4:2:0 planes,
converts that region to RGB for the model, and pastes the generated pixels back into the planes, so every
pixel outside the pasted mask is the decoder's own byte. The colour matrix (BT.601, BT.709 or BT.2020) and
range (limited or full) come from the stream's tags; the same matrices convert in both directions, so a
pixel taken out and put back unchanged comes back within rounding.

Rotation: a stored frame ``S`` is shown upright as ``np.rot90(S, k)``. Windows live in upright coordinates
(where the face is upright for the face analyser and the model); :func:`stored_box` maps them to ``S``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# (K_R, K_B) of each AVColorSpace tag; unspecified (2) and unknown tags use BT.601, swscale's default.
_KR_KB = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
_BT601 = (0.299, 0.114)
FULL_RANGE = 2  # AVCOL_RANGE_JPEG


@dataclass(frozen=True)
class Window:
    """A crop window in upright source pixels: ``[x0, x0 + width) × [y0, y0 + height)``; may reach past the frame."""

    x0: int
    y0: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``."""
        return self.x0, self.y0, self.x0 + self.width, self.y0 + self.height

    def to_crop(self, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Source-pixel boxes ``[..., 4]`` (x0, y0, x1, y1) in the coordinates of the ``(h, w)`` model crop."""
        sy, sx = size[0] / self.height, size[1] / self.width
        offset = np.array([self.x0, self.y0, self.x0, self.y0], np.float64)
        return (np.asarray(boxes, np.float64) - offset) * np.array([sx, sy, sx, sy])


def stored_box(box: tuple[int, int, int, int], k: int, stored_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The stored-frame box ``(x0, y0, x1, y1)`` showing the upright box ``box`` when the frame is turned by ``k``.

    ``np.rot90(S, k)[y0:y1, x0:x1]`` equals ``np.rot90(S[sy0:sy1, sx0:sx1], k)``.
    """
    x0, y0, x1, y1 = box
    h, w = stored_hw
    k %= 4
    if k == 0:
        return x0, y0, x1, y1
    if k == 1:
        return w - y1, x0, w - y0, x1
    if k == 2:
        return w - x1, h - y1, w - x0, h - y0
    return y0, h - x1, y1, h - x0


def _coefficients(colorspace: int) -> tuple[float, float]:
    return _KR_KB.get(int(colorspace), _BT601)


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, colorspace: int, color_range: int) -> np.ndarray:
    """8-bit 4:2:0 planes (even-sized region) to RGB ``[h, w, 3]`` uint8; chroma repeated over its 2×2 pixels."""
    kr, kb = _coefficients(colorspace)
    kg = 1.0 - kr - kb
    yf = y.astype(np.float32)
    uf = np.repeat(np.repeat(u.astype(np.float32) - 128.0, 2, axis=0), 2, axis=1)
    vf = np.repeat(np.repeat(v.astype(np.float32) - 128.0, 2, axis=0), 2, axis=1)
    if color_range == FULL_RANGE:
        luma, cb, cr = yf, uf, vf
    else:
        luma, cb, cr = (yf - 16.0) * (255.0 / 219.0), uf * (255.0 / 224.0), vf * (255.0 / 224.0)
    r = luma + 2.0 * (1.0 - kr) * cr
    b = luma + 2.0 * (1.0 - kb) * cb
    g = (luma - kr * r - kb * b) / kg
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def rgb_to_yuv(rgb: np.ndarray, colorspace: int, color_range: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB ``[h, w, 3]`` (even sides, 0…255) to float32 Y ``[h, w]`` and U, V ``[h/2, w/2]`` (2×2 means)."""
    kr, kb = _coefficients(colorspace)
    f = rgb.astype(np.float32)
    luma = kr * f[..., 0] + (1.0 - kr - kb) * f[..., 1] + kb * f[..., 2]
    cb = (f[..., 2] - luma) / (2.0 * (1.0 - kb))
    cr = (f[..., 0] - luma) / (2.0 * (1.0 - kr))
    if color_range != FULL_RANGE:
        luma, cb, cr = 16.0 + luma * (219.0 / 255.0), cb * (224.0 / 255.0), cr * (224.0 / 255.0)
    return luma, pool2(cb) + 128.0, pool2(cr) + 128.0


def pool2(x: np.ndarray) -> np.ndarray:
    """Mean over 2×2 blocks ``[h, w] → [h/2, w/2]`` (h, w even)."""
    h, w = x.shape[:2]
    return x.reshape(h // 2, 2, w // 2, 2, *x.shape[2:]).mean(axis=(1, 3))


def cut_crop(
    planes: tuple[np.ndarray, np.ndarray, np.ndarray],
    window: Window,
    k: int,
    size: tuple[int, int],
    colorspace: int,
    color_range: int,
) -> np.ndarray:
    """The window of a stored frame as an upright RGB crop at the model resolution.

    Only the part of the window inside the frame is converted; the rest is the nearest edge pixel
    (edge padding), as when a face is near the border.

    Args:
        planes: Stored-frame Y ``[H, W]``, U, V ``[H/2, W/2]``.
        window: Upright window (even position and size).
        k: Quarter turns from stored to upright.
        size: ``(h, w)`` of the model crop.
        colorspace: Colour matrix tag.
        color_range: Range tag.

    Returns:
        ``[h, w, 3]`` uint8.
    """
    y, u, v = planes
    stored_hw = y.shape
    sx0, sy0, sx1, sy1 = stored_box(window.box, k, stored_hw)
    cx0, cy0 = max(sx0, 0), max(sy0, 0)
    cx1, cy1 = min(sx1, stored_hw[1]), min(sy1, stored_hw[0])
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError(f"crop window {window} lies outside the {stored_hw[1]}x{stored_hw[0]} frame")
    rgb = yuv_to_rgb(
        y[cy0:cy1, cx0:cx1],
        u[cy0 // 2 : cy1 // 2, cx0 // 2 : cx1 // 2],
        v[cy0 // 2 : cy1 // 2, cx0 // 2 : cx1 // 2],
        colorspace,
        color_range,
    )
    pad = (cy0 - sy0, sy1 - cy1, cx0 - sx0, sx1 - cx1)
    if any(pad):
        rgb = cv2.copyMakeBorder(rgb, *pad, cv2.BORDER_REPLICATE)
    if k:
        rgb = np.rot90(rgb, k)
    return cv2.resize(np.ascontiguousarray(rgb), (size[1], size[0]), interpolation=cv2.INTER_AREA)


def paste_crop(
    planes: tuple[np.ndarray, np.ndarray, np.ndarray],
    window: Window,
    k: int,
    generated: np.ndarray,
    mask: np.ndarray,
    colorspace: int,
    color_range: int,
) -> None:
    """Blend a generated crop into a stored frame's planes, in place, where the mask is non-zero.

    Pixels whose (upsampled) mask is 0 are not written, so outside the mask the planes keep the decoder's
    bytes exactly. The blend is linear in YUV, which is linear in RGB: ``m·generated + (1 − m)·source``.

    Args:
        planes: Stored-frame Y ``[H, W]``, U, V ``[H/2, W/2]`` (modified).
        window: Upright window the crop came from.
        k: Quarter turns from stored to upright.
        generated: Upright generated crop ``[h, w, 3]`` uint8 at the model resolution.
        mask: Upright blend weights ``[h, w]`` in [0, 1] at the model resolution.
        colorspace: Colour matrix tag.
        color_range: Range tag.
    """
    y, u, v = planes
    stored_hw = y.shape
    size = (window.width, window.height)
    big = cv2.resize(generated, size, interpolation=cv2.INTER_CUBIC)
    weight = np.clip(cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    if k:  # back to the stored orientation
        big, weight = np.rot90(big, -k), np.rot90(weight, -k)
    sx0, sy0, sx1, sy1 = stored_box(window.box, k, stored_hw)
    cx0, cy0 = max(sx0, 0), max(sy0, 0)
    cx1, cy1 = min(sx1, stored_hw[1]), min(sy1, stored_hw[0])
    if cx1 <= cx0 or cy1 <= cy0:
        return
    inner = (slice(cy0 - sy0, cy1 - sy0), slice(cx0 - sx0, cx1 - sx0))
    weight = np.ascontiguousarray(weight[inner])
    if not weight.any():
        return
    gy, gu, gv = rgb_to_yuv(np.ascontiguousarray(big[inner]), colorspace, color_range)
    wc = pool2(weight)
    region_y = y[cy0:cy1, cx0:cx1]
    region_u = u[cy0 // 2 : cy1 // 2, cx0 // 2 : cx1 // 2]
    region_v = v[cy0 // 2 : cy1 // 2, cx0 // 2 : cx1 // 2]
    for region, gen, w in ((region_y, gy, weight), (region_u, gu, wc), (region_v, gv, wc)):
        on = w > 0
        mixed = w[on] * gen[on] + (1.0 - w[on]) * region[on].astype(np.float32)
        region[on] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
