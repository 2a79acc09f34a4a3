"""Assembling the DiT input of one forward pass: one implementation for the trainer and the sampler.

The trainer noises a clip once per step; the sampler builds the same input at every Euler step (and per
TAPSF block, with global frame indices). Both call :func:`assemble_dit_inputs`, so the token order
(references first), per-token times, RoPE coordinates and the audio routing cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.model.audio_windows import sample_audio_windows
from trainer.model.dit import AudioInputs
from trainer.model.masks import box_to_token_box
from trainer.model.sequence import (
    ReferenceTokens,
    batch_token_boxes,
    grid_coords,
    identity_reference_index,
    reference_tokens,
    video_token_grid,
)


@dataclass
class DiTInputs:
    """What :class:`trainer.model.dit.TalkingHeadDiT` reads in one forward pass.

    Attributes:
        tokens: ``[B, N_ref + N, C]`` (reference tokens first, then video tokens).
        timestep: Per-token flow time ``[B, N_ref + N]`` (0 for clean tokens).
        coords: RoPE coordinates ``[B, 3, N_ref + N]``.
        audio: Audio windows, per-token latent frame and gate; ``None`` for a DiT without audio adapter.
        num_ref: Reference tokens at the head of the sequence.
    """

    tokens: torch.Tensor
    timestep: torch.Tensor
    coords: torch.Tensor
    audio: AudioInputs | None
    num_ref: int


def assemble_dit_inputs(
    x_t: torch.Tensor,
    t_tok: torch.Tensor,
    gate: torch.Tensor,
    grid: tuple[int, int, int],
    fps: torch.Tensor,
    windows: torch.Tensor | None,
    window_valid: torch.Tensor | None,
    references: Sequence[ReferenceTokens] = (),
    frame_offset: int = 0,
) -> DiTInputs:
    """Prepend clean reference tokens to the (partly) noised video tokens and attach coordinates and audio.

    Args:
        x_t: Video tokens ``[B, T·H·W, C]`` in :func:`trainer.model.sequence.patchify` order.
        t_tok: Their flow times ``[B, T·H·W]``.
        gate: Eq. 6 audio gate of the video tokens ``[B, T·H·W]`` (the mask ``M``).
        grid: ``(T, H, W)`` latent frames, rows and columns of the video tokens.
        fps: Frame rate per sample ``[B]``.
        windows: Eq. 3 audio windows ``[B, F, W, Bl, C]`` of the whole video; ``None`` for a DiT without audio
            adapter (the base stage), which then gets no audio inputs.
        window_valid: ``[B, F, W]`` (``None`` with ``windows``).
        references: Clean reference token sets, in sequence order (identity, then frame references).
        frame_offset: Global latent index of the first video frame (a TAPSF block's start), so RoPE and the
            audio routing use global frame positions.

    Returns:
        The DiT inputs; reference tokens have time 0, gate 0 and read no audio (frame index −1).
    """
    bsz = x_t.shape[0]
    dev = x_t.device
    frames, rows, cols = video_token_grid(bsz, *grid, dev)
    frames = frames + frame_offset
    tokens, times, coords = [x_t], [t_tok], [grid_coords(frames, rows, cols, fps.to(dev))]
    frame_index, gates = [frames], [gate]
    num_ref = 0
    for ref in reversed(references):  # prepended one by one: the first set ends up first
        n = ref.count
        num_ref += n
        tokens.insert(0, ref.tokens.to(x_t.dtype))
        times.insert(0, torch.zeros(bsz, n, device=dev, dtype=t_tok.dtype))
        coords.insert(0, ref.coords)
        frame_index.insert(0, torch.full((bsz, n), -1, device=dev, dtype=torch.long))
        gates.insert(0, torch.zeros(bsz, n, device=dev, dtype=gate.dtype))
    audio = None
    if windows is not None:
        audio = AudioInputs(
            windows=windows,
            window_valid=window_valid,
            token_frame_index=torch.cat(frame_index, dim=1),
            gate=torch.cat(gates, dim=1),
        )
    return DiTInputs(
        tokens=torch.cat(tokens, dim=1),
        timestep=torch.cat(times, dim=1),
        coords=torch.cat(coords, dim=2),
        audio=audio,
        num_ref=num_ref,
    )


def identity_references(
    latents: torch.Tensor, boxes: torch.Tensor, grid_h: int, grid_w: int, fps: torch.Tensor
) -> ReferenceTokens:
    """Face reference tokens (paper §3.4): the lower-face tokens of each reference frame, sentinel indices.

    One box per sample, the union of its reference frames' lower-face boxes grown to the batch's largest,
    so every sample contributes the same number of tokens.

    Args:
        latents: Reference latents ``[B, C, R, H, W]`` (one latent frame per reference frame).
        boxes: Lower-face boxes per reference frame ``[B, R, 4]`` (x0, y0, x1, y1 pixels).
        grid_h: Latent rows.
        grid_w: Latent columns.
        fps: ``[B]``.

    Returns:
        ``R·h·w`` tokens per sample at sentinel latent indices ``−1, −2, …``.
    """
    token_boxes = box_to_token_box(boxes, grid_h, grid_w)  # [B, R, 4]
    union = torch.stack(
        [
            token_boxes[..., 0].amin(1),
            token_boxes[..., 1].amin(1),
            token_boxes[..., 2].amax(1),
            token_boxes[..., 3].amax(1),
        ],
        dim=1,
    )
    index = identity_reference_index(latents.shape[2], latents.device)
    return reference_tokens(latents, batch_token_boxes(union, grid_h, grid_w), index, fps)


def frame_reference_index(source: torch.Tensor, block_start: int, block_end: int, max_gap: int = 3) -> torch.Tensor:
    """Eq. 7: the temporal index full-frame reference tokens get for a block (forward–backward RoPE).

    A clean source latent frame within ``max_gap`` latent frames of the block keeps its own index; a
    farther past frame is placed ``max_gap`` before the block's start, a farther future frame ``max_gap``
    after its end, so it is close enough in RoPE phase to guide appearance without being copied.

    Args:
        source: Latent indices of the source frames ``[R]`` (global, outside ``[block_start, block_end]``).
        block_start: First latent frame of the block.
        block_end: Last latent frame of the block (inclusive).
        max_gap: The largest temporal distance kept (3 in the paper).

    Returns:
        ``[R]`` float32 indices ``t_ref``.

    Raises:
        ValueError: A source frame lies inside the block (it would be a V2V condition, not a reference).
    """
    s = source.to(torch.float32)
    inside = (s >= block_start) & (s <= block_end)
    if inside.any():
        raise ValueError(
            f"frame references {source[inside].tolist()} lie inside the block [{block_start}, {block_end}]"
        )
    past = s < block_start
    gap = torch.where(past, block_start - s, s - block_end)
    far = torch.where(past, torch.full_like(s, block_start - max_gap), torch.full_like(s, block_end + max_gap))
    return torch.where(gap <= max_gap, s, far)


def frame_references(
    latents: torch.Tensor, source: torch.Tensor, block_start: int, block_end: int, fps: torch.Tensor
) -> ReferenceTokens:
    """Full-frame reference tokens of clean latent frames for a block, at their Eq. 7 indices.

    Args:
        latents: Clean latent frames ``[B, C, R, H, W]``.
        source: Their global latent indices ``[R]``.
        block_start: First latent frame of the block being generated.
        block_end: Its last latent frame (inclusive).
        fps: ``[B]``.

    Returns:
        ``R·H·W`` tokens per sample.
    """
    bsz, _, _, grid_h, grid_w = latents.shape
    whole = torch.tensor([[0, 0, grid_h, grid_w]], device=latents.device).expand(bsz, -1)
    index = frame_reference_index(source, block_start, block_end).to(latents.device)
    return reference_tokens(latents, whole, index, fps)


def batch_audio_windows(
    batch: dict, window: int, feature_rate: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3 windows of a loader batch (``whisper``, ``whisper_len``, ``fps``, ``num_frames``, ``frame_start``).

    Returns:
        ``(windows [B, F, W, Bl, C] float32, valid [B, F, W] bool)``.
    """
    return sample_audio_windows(
        batch["whisper"].to(device, torch.float32),
        batch["whisper_len"].to(device),
        batch["fps"].to(device),
        batch["num_frames"],
        window,
        feature_rate,
        first_frame=batch["frame_start"].to(device),
    )
