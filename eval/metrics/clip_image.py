"""CLIP-I (AnyExpress A.2.2): cosine similarity of CLIP image embeddings of generated faces to a reference face.

``CLIP-I = mean over frames of cos(e_gen, e_ref)``, where ``e`` is a CLIP vision encoder's projected image
embedding of a face crop. AnyExpress uses a CLIP encoder pretrained on LAION-Face (FaRL); any CLIP vision
checkpoint in the transformers layout loads here (``CLIPVisionModelWithProjection`` + its image processor from
one local folder, ``TALKDIT_CLIP``), so the encoder is whichever the folder holds and tables should name it.

Face crops: the square around a frame's face-mesh landmarks (:func:`eval.metrics.landmarks.face_landmarks`),
grown by ``margin`` of its side and clipped to the frame; frames without a face are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eval.metrics.identity import face_sim

__all__ = ["CLIPImageEncoder", "clip_i", "face_crops", "load_clip"]

FACE_MARGIN = 0.2


class CLIPImageEncoder:
    """A transformers CLIP vision encoder with its image processor.

    Args:
        model: ``CLIPVisionModelWithProjection``.
        processor: Its ``CLIPImageProcessor``.
        device: Where the model runs.
    """

    def __init__(self, model, processor, device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        """Projected image embeddings ``[N, D]`` float64 of uint8 RGB images (any sizes)."""
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        return self.model(pixel_values=pixels).image_embeds.double().cpu().numpy()


def load_clip(path: str | Path, device: str | torch.device = "cpu") -> CLIPImageEncoder:
    """The CLIP vision encoder of a local transformers folder (given as the folder or its ``config.json``).

    Raises:
        ValueError: The folder does not hold a CLIP vision model and image processor (names the folder).
    """
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
        processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{folder} is not a transformers CLIP folder with an image processor: {err}") from err
    return CLIPImageEncoder(model, processor, device)


def face_crops(frames: np.ndarray, landmarks: np.ndarray, margin: float = FACE_MARGIN) -> tuple[list, np.ndarray]:
    """Square face crops of ``frames`` ``[T, H, W, 3]`` around their landmarks ``[T, K, 2]``.

    Returns:
        ``(crops, kept)``: the uint8 crops of the frames with a face and their frame indices.
    """
    crops, kept = [], []
    h, w = frames.shape[1:3]
    for i, lm in enumerate(landmarks):
        if not np.isfinite(lm).all():
            continue
        (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
        side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left, top = int(max(0, round(cx - side / 2))), int(max(0, round(cy - side / 2)))
        right, bottom = int(min(w, round(cx + side / 2))), int(min(h, round(cy + side / 2)))
        if right - left >= 2 and bottom - top >= 2:
            crops.append(np.ascontiguousarray(frames[i, top:bottom, left:right]))
            kept.append(i)
    return crops, np.asarray(kept, dtype=np.int64)


def clip_i(
    encoder: CLIPImageEncoder,
    frames: np.ndarray,
    landmarks: np.ndarray,
    reference: np.ndarray,
    reference_landmarks: np.ndarray,
) -> float:
    """CLIP-I of generated ``frames`` ``[T, H, W, 3]`` to the face of ``reference`` ``[H', W', 3]``.

    Args:
        encoder: :func:`load_clip`'s encoder.
        frames: Generated frames, uint8.
        landmarks: Their face landmarks ``[T, K, 2]`` (NaN rows: no face).
        reference: The reference image, uint8.
        reference_landmarks: Its landmarks ``[K, 2]``.

    Raises:
        ValueError: No face in the reference or in any generated frame.
    """
    ref_crops, _ = face_crops(reference[None], reference_landmarks[None])
    if not ref_crops:
        raise ValueError("no face in the reference image")
    crops, kept = face_crops(frames, landmarks)
    if not crops:
        raise ValueError("no generated frame has a face")
    gen = encoder(crops)
    embeddings = np.full((frames.shape[0], gen.shape[1]), np.nan)
    embeddings[kept] = gen
    return face_sim(embeddings, encoder(ref_crops)[0])
