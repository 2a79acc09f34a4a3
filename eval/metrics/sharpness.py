"""CPBD: no-reference sharpness, the Cumulative Probability of Blur Detection (FaceEditTalker's sharpness column).

Narvekar & Karam, "A No-Reference Image Blur Metric Based on the Cumulative Probability of Blur Detection
(CPBD)", IEEE TIP 2011, as their reference implementation computes it:

1. Canny edges (scikit-image, its defaults) pick the *edge blocks*: 64×64 blocks with more than 0.2 % edge pixels.
2. Edge widths are measured at Sobel edges (the horizontal-gradient kernel, Octave's ``edge`` threshold
   ``2·sqrt(mean(strength²))`` and its simple thinning), Marziliano's way: along the row from the edge pixel,
   outwards, while the intensity keeps falling (rising) on the dark (bright) side, at most 101 pixels a side;
   only edges whose gradient angle quantises to 0° or ±180° get a width.
3. Each width ``w`` in an edge block of contrast ``C`` (max − min) has the probability of blur detection
   ``P = 1 − exp(−|w / w_JNB|^β)``, ``β = 3.6``, with the just-noticeable width ``w_JNB = 5`` for ``C ≤ 50`` and 3
   otherwise.
4. CPBD is the share of those probabilities at or below the just-noticeable 63 % (histogram in 1 % buckets).

Higher is sharper (1: no edge looks blurred). The widths, which the reference finds with a loop per edge pixel,
come from run lengths of monotonic intensity along each row here (the same numbers; tested against the
reference's values).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve

from eval.metrics.video import as_video

BETA = 3.6
BLOCK = 64
EDGE_SHARE = 0.002  # a block is an edge block above this share of Canny edge pixels
JNB_BUCKET = 63  # P(blur) at or below 63 % counts as not blurred
MAX_MARGIN = 100  # the reference walks at most 101 pixels each side of an edge
# Sobel kernel of horizontal gradients (vertical edges), normalised to a unit L1 norm as Octave's edge() does.
_SOBEL_X = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 8.0


def luminance(frames: np.ndarray) -> np.ndarray:
    """8-bit luminance as PIL's ``convert("L")`` computes it (ITU-R 601-2), as float64.

    Args:
        frames: ``[..., 3]`` uint8 RGB.

    Returns:
        ``[...]`` float64 in [0, 255], integer-valued.
    """
    rgb = frames.astype(np.int64)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.float64)


def sobel_edges(image: np.ndarray) -> np.ndarray:
    """Thinned vertical Sobel edges ``[H, W]`` bool of a grey image (Octave's ``edge(I, "sobel")`` rule)."""
    strength = np.square(convolve(image, _SOBEL_X))
    strength[strength <= 2 * np.sqrt(strength.mean())] = 0
    pad_col = np.zeros((strength.shape[0], 1))
    pad_row = np.zeros((1, strength.shape[1]))
    across = (strength > np.hstack([pad_col, strength[:, :-1]])) & (strength > np.hstack([strength[:, 1:], pad_col]))
    down = (strength > np.vstack([pad_row, strength[:-1]])) & (strength > np.vstack([strength[1:], pad_row]))
    return across | down


def _runs(steps: np.ndarray, leftwards: bool) -> np.ndarray:
    """Per position, how many consecutive ``True`` steps end there (leftwards) or start there (rightwards)."""
    out = np.zeros(steps.shape, dtype=np.int64)
    cols = range(steps.shape[1]) if leftwards else range(steps.shape[1] - 1, -1, -1)
    prev = np.zeros(steps.shape[0], dtype=np.int64)
    for c in cols:
        prev = np.where(steps[:, c], prev + 1, 0)
        out[:, c] = prev
    return out


def edge_widths(image: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Marziliano widths ``[H, W]`` at ``edges`` whose gradient is horizontal (0 elsewhere).

    Args:
        image: ``[H, W]`` float64 grey image.
        edges: ``[H, W]`` bool edge map (:func:`sobel_edges`).
    """
    height, width = image.shape
    widths = np.zeros(image.shape)
    grad_y, grad_x = np.gradient(image)
    # Where the x gradient is 0 the reference leaves the angle at 0 (its other branches never fire on images).
    angle = np.where(grad_x != 0, np.degrees(np.arctan2(grad_y, grad_x)), 0.0)
    if not angle.any() or width < 3:
        return widths
    quantised = 45 * np.round(angle / 45)
    diff = image[:, :-1] - image[:, 1:]  # diff[:, i] = I[i] − I[i + 1]
    falling_l, rising_l = _runs(diff > 0, True), _runs(diff < 0, True)
    falling_r, rising_r = _runs(diff > 0, False), _runs(diff < 0, False)
    inner = np.zeros(image.shape, dtype=bool)
    inner[1:-1, 1:-1] = edges[1:-1, 1:-1]
    rows, cols = np.nonzero(inner)
    q = quantised[rows, cols]
    left_idx, right_idx = cols - 2, cols + 1

    def side(runs: np.ndarray, idx: np.ndarray) -> np.ndarray:
        valid = (idx >= 0) & (idx < width - 1)
        got = np.zeros(idx.shape, dtype=np.int64)
        got[valid] = runs[rows[valid], idx[valid]]
        return np.minimum(got, MAX_MARGIN) + 1

    # Intensity falling left to right (gradient angle ±180°): the edge spans the run of falls each side.
    down = np.abs(q) == 180
    widths[rows[down], cols[down]] = (side(falling_l, left_idx) + side(falling_r, right_idx))[down]
    up = q == 0
    widths[rows[up], cols[up]] = (side(rising_l, left_idx) + side(rising_r, right_idx))[up]
    return widths


def cpbd(image: np.ndarray) -> float | None:
    """CPBD of one grey image (see the module docstring).

    Args:
        image: ``[H, W]`` grey levels in [0, 255] (:func:`luminance`).

    Returns:
        CPBD in [0, 1]; ``None`` when no 64×64 edge block has a measured edge (the reference returns 0 there),
        e.g. for frames smaller than 64 pixels or without texture.
    """
    from skimage.feature import canny

    image = np.asarray(image, dtype=np.float64)
    canny_edges = canny(image)
    widths = edge_widths(image, sobel_edges(image))
    hist = np.zeros(101)
    for top in range(0, image.shape[0] - BLOCK + 1, BLOCK):
        for left in range(0, image.shape[1] - BLOCK + 1, BLOCK):
            block = (slice(top, top + BLOCK), slice(left, left + BLOCK))
            if np.count_nonzero(canny_edges[block]) <= BLOCK * BLOCK * EDGE_SHARE:
                continue
            w = widths[block][widths[block] != 0]
            contrast = int(image[block].max() - image[block].min())
            jnb = 5.0 if contrast <= 50 else 3.0
            p_blur = 1 - np.exp(-(np.abs(w / jnb) ** BETA))
            hist += np.bincount(np.rint(p_blur * 100).astype(np.int64), minlength=101)
    total = hist.sum()
    return float(hist[: JNB_BUCKET + 1].sum() / total) if total else None


def cpbd_video(video: np.ndarray) -> float | None:
    """Mean CPBD over the frames of a video ``[T, H, W, 3]`` (frames without edge blocks left out).

    Returns:
        The mean, or ``None`` when no frame has an edge block.
    """
    values = [cpbd(luminance(frame)) for frame in as_video(video, "video")]
    got = [v for v in values if v is not None]
    return float(np.mean(got)) if got else None
