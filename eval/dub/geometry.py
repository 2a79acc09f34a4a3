"""Crop windows, their place in the stored (possibly rotated) frame, and the YUV ↔ RGB conversion of a region.

The dub never converts a whole source frame: it cuts the face window out of the decoded 4:2:0 planes,
resizes them to the model resolution and converts that to RGB for the model, and pastes the generated
pixels back into the planes (converted to YUV at the model resolution, then resized to the window), so
every pixel outside the pasted mask is the decoder's own byte and no step touches more pixels than the
window's. The colour matrix (BT.601, BT.709 or BT.2020) and
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


def yuv444_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, colorspace: int, color_range: int) -> np.ndarray:
    """Y, U, V of the same size ``[h, w]`` (any real values on the 8-bit scale) to RGB ``[h, w, 3]`` uint8."""
    kr, kb = _coefficients(colorspace)
    kg = 1.0 - kr - kb
    yf = y.astype(np.float32)
    uf = u.astype(np.float32) - 128.0
    vf = v.astype(np.float32) - 128.0
    if color_range == FULL_RANGE:
        luma, cb, cr = yf, uf, vf
    else:
        luma, cb, cr = (yf - 16.0) * (255.0 / 219.0), uf * (255.0 / 224.0), vf * (255.0 / 224.0)
    r = luma + 2.0 * (1.0 - kr) * cr
    b = luma + 2.0 * (1.0 - kb) * cb
    g = (luma - kr * r - kb * b) / kg
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def rgb_to_yuv444(rgb: np.ndarray, colorspace: int, color_range: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB ``[h, w, 3]`` (0…255) to float32 Y, U, V, each ``[h, w]``, on the 8-bit scale of the range."""
    kr, kb = _coefficients(colorspace)
    f = rgb.astype(np.float32)
    luma = kr * f[..., 0] + (1.0 - kr - kb) * f[..., 1] + kb * f[..., 2]
    cb = (f[..., 2] - luma) / (2.0 * (1.0 - kb))
    cr = (f[..., 0] - luma) / (2.0 * (1.0 - kr))
    if color_range != FULL_RANGE:
        luma, cb, cr = 16.0 + luma * (219.0 / 255.0), cb * (224.0 / 255.0), cr * (224.0 / 255.0)
    return luma, cb + 128.0, cr + 128.0


def _inside(window: Window, k: int, stored_hw: tuple[int, int]) -> tuple[tuple[int, int, int, int], tuple[int, ...]]:
    """The window's stored box and the part of it inside the frame: ``((sx0, sy0, sx1, sy1), (cx0, cy0, cx1, cy1))``."""
    sx0, sy0, sx1, sy1 = stored_box(window.box, k, stored_hw)
    cx0, cy0 = max(sx0, 0), max(sy0, 0)
    cx1, cy1 = min(sx1, stored_hw[1]), min(sy1, stored_hw[0])
    return (sx0, sy0, sx1, sy1), (cx0, cy0, cx1, cy1)


def cut_crop(
    planes: tuple[np.ndarray, np.ndarray, np.ndarray],
    window: Window,
    k: int,
    size: tuple[int, int],
    colorspace: int,
    color_range: int,
) -> np.ndarray:
    """The window of a stored frame as an upright RGB crop at the model resolution.

    Each plane is resized to the model resolution first and converted to RGB there (the conversion is
    linear, so this equals converting then resizing up to rounding, at a fraction of the pixels). The part
    of the window outside the frame is the nearest edge pixel (edge padding), as when a face is near the
    border.

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
    (sx0, sy0, sx1, sy1), (cx0, cy0, cx1, cy1) = _inside(window, k, y.shape)
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError(f"crop window {window} lies outside the {y.shape[1]}x{y.shape[0]} frame")
    pad = (cy0 - sy0, sy1 - cy1, cx0 - sx0, sx1 - cx1)  # even: windows and frames have even sides
    upright = []
    for plane, div in ((y, 1), (u, 2), (v, 2)):
        region = plane[cy0 // div : cy1 // div, cx0 // div : cx1 // div]
        if any(pad):
            region = cv2.copyMakeBorder(region, *(p // div for p in pad), cv2.BORDER_REPLICATE)
        if k:
            region = np.rot90(region, k)
        # Chroma goes straight from its half resolution to the model's (one resampling, as for luma).
        upright.append(cv2.resize(np.ascontiguousarray(region), (size[1], size[0]), interpolation=cv2.INTER_AREA))
    return yuv444_to_rgb(*upright, colorspace, color_range)


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

    The crop is converted to YUV at the model resolution and each plane resized to the window (chroma to
    half of it); the blend ``m·generated + (1 − m)·source`` (linear in YUV, hence in RGB) is computed over
    the bounding box of the non-zero mask only. Where the (resized) mask is 0 the sum is the source byte
    exactly, so outside the mask the planes keep the decoder's bytes.

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
    (sx0, sy0, sx1, sy1), (cx0, cy0, cx1, cy1) = _inside(window, k, y.shape)
    if cx1 <= cx0 or cy1 <= cy0 or not mask.any():
        return
    gen = rgb_to_yuv444(generated, colorspace, color_range)
    for plane, g, div in ((y, gen[0], 1), (u, gen[1], 2), (v, gen[2], 2)):
        wide, high = window.width // div, window.height // div
        big = cv2.resize(g, (wide, high), interpolation=cv2.INTER_CUBIC)
        weight = np.clip(cv2.resize(mask.astype(np.float32), (wide, high), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        if k:  # back to the stored orientation
            big, weight = np.rot90(big, -k), np.rot90(weight, -k)
        # The part inside the frame, in this plane's pixels, and its bounding box of non-zero weights.
        oy, ox = (cy0 - sy0) // div, (cx0 - sx0) // div
        hh, ww = (cy1 - cy0) // div, (cx1 - cx0) // div
        weight = weight[oy : oy + hh, ox : ox + ww]
        rows, cols = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
        if rows.size == 0:
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        w = weight[r0:r1, c0:c1]
        src = plane[cy0 // div + r0 : cy0 // div + r1, cx0 // div + c0 : cx0 // div + c1]
        mixed = w * big[oy + r0 : oy + r1, ox + c0 : ox + c1] + (1.0 - w) * src.astype(np.float32)
        src[...] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
