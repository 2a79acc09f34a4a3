"""Full-size frames data_prep holds for clips and references, and the size clips are stored at."""

from __future__ import annotations

import cv2
import numpy as np

from data_prep.media import i420_to_rgb, rgb_to_i420


def output_size(height: int, width: int, max_long_side: int | None) -> tuple[int, int]:
    """Stored clip size: the source's, or downscaled so the longer side is at most ``max_long_side`` (even sides)."""
    if max_long_side is None or max(height, width) <= max_long_side:
        return height, width
    scale = max_long_side / max(height, width)
    return 2 * round(height * scale / 2), 2 * round(width * scale / 2)


class FrameBuffer:
    """Full-size frames held for clips and references, as planar YUV 4:2:0.

    That is half the memory of RGB, and what the encoder takes without a conversion. Frames with an odd side
    (which YUV 4:2:0 cannot hold) stay RGB.
    """

    def __init__(self) -> None:
        self._frames: dict[int, np.ndarray] = {}

    def __contains__(self, index: int) -> bool:
        return index in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    def indices(self) -> list[int]:
        """Indices of the frames held."""
        return list(self._frames)

    def add(self, index: int, rgb: np.ndarray) -> None:
        """Hold frame ``index`` (``[H, W, 3]`` uint8 RGB)."""
        h, w = rgb.shape[:2]
        self._frames[index] = rgb_to_i420(rgb) if h % 2 == 0 and w % 2 == 0 else rgb

    def rgb(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """Frame ``index`` as RGB ``[H, W, 3]``, resized (area) to ``size`` = ``(H, W)`` when given."""
        frame = self._frames[index]
        rgb = i420_to_rgb(frame) if frame.ndim == 2 else frame
        if size is not None and rgb.shape[:2] != tuple(size):
            rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return rgb

    def planar(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Frame ``index`` as the encoder takes it (YUV 4:2:0 at ``size``), converting only when needed."""
        frame = self._frames[index]
        if frame.ndim == 2 and (frame.shape[0] * 2 // 3, frame.shape[1]) == tuple(size):
            return frame
        return rgb_to_i420(self.rgb(index, size))

    def drop(self, index: int) -> None:
        """Release frame ``index``."""
        del self._frames[index]
