"""Long-video denoising by TAPSF block scheduling (``sampler.long_video=tapsf``, the paper's choice).

How to denoise a latent video longer than the DiT's comfortable context (paper §3.4 and the appendix
paragraph "VAE Tiling and Latent Frame Blocking"); the alternative for T2V/I2V, AnyExpress's progressive
prefix conditioning, is :mod:`eval.sampler.prefix_conditioning`.

**TAPSF** (time-aware position shift fusion, Sonic [47] as adapted by EditYourself). The whole latent
video lives in memory; at every denoising step it is partitioned into blocks of ``block_size`` (17)
latent frames, the DiT predicts a velocity for each block on its own, and one Euler step is taken on
the full video. Between steps the partition moves by ``shift`` (5) latent frames, so context travels
across block borders over the course of denoising. EditYourself keeps the partition fixed in the
middle ``unshifted_fraction`` (75 %) of the steps (so cache-based acceleration such as TeaCache can
reuse block outputs there) and shifts during the early and late steps.

Our reading of the offset, from Sonic's released pipeline (``shift += shift_offset`` after every step
and ``index_start = k·stride − shift``): the shift *accumulates*, block ``k`` of step ``i`` starts at
``k·block_size − offset_i`` with ``offset_0 = 0`` and ``offset_i = offset_{i−1} + shift`` if step ``i``
is a shifting step, else ``offset_{i−1}`` (only ``offset mod block_size`` matters). So consecutive
middle steps see the same partition, and each early/late step sees a partition moved by ``shift``
from the previous step's. Sonic wraps the blocks around the video end (circular padding, which the
paper's appendix also mentions); the paper's §3.4 instead describes boundary frames that "fall outside
a block" being evaluated twice, "once from each neighboring block", with the velocities averaged. The
default plan implements the latter: the partial block at either end is widened to a full block that
overlaps its neighbour, every frame is covered at least once, and overlapping frames' velocities are
averaged with per-frame counts. ``wrap=True`` gives Sonic's circular variant. RoPE uses *global*
latent frame indices in both (the DiT sees where a block sits in the whole video), which is why the
block callbacks receive ``frame_indices``. All blocks of a step read the same latents and the
averaged velocity drives one Euler step of the whole video; Sonic instead steps each block and
averages the stepped latents, which is the same thing for a (linear) Euler step.

Shapes: latents are ``[B, C, T, H, W]`` (``T`` latent frames, ``H × W`` latent tokens per frame);
per-token tensors follow :func:`trainer.model.sequence.patchify` order (frame-major), ``[B, T·H·W, …]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from trainer.model.sequence import grid_coords, video_token_grid

BlockFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TAPSFConfig:
    """TAPSF block schedule.

    Attributes:
        block_size: Latent frames per inference block (17 latent frames = 136 video frames).
        shift: Latent frames the partition moves at each shifting step.
        unshifted_fraction: Fraction of the steps, in the middle of denoising, without a shift.
        wrap: ``False``: boundary remainders are widened into full blocks overlapping their neighbours
            (paper §3.4). ``True``: blocks wrap around the video end (Sonic's circular padding); a
            wrapped block's global RoPE coordinates then jump from the video's end back to its start.
    """

    block_size: int = 17
    shift: int = 5
    unshifted_fraction: float = 0.75
    wrap: bool = False

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size={self.block_size}: must be >= 1")
        if self.shift < 0:
            raise ValueError(f"shift={self.shift}: must be >= 0")
        if not 0.0 <= self.unshifted_fraction <= 1.0:
            raise ValueError(f"unshifted_fraction={self.unshifted_fraction}: must be in [0, 1]")


def shifting_steps(num_steps: int, unshifted_fraction: float = 0.75) -> list[bool]:
    """Which denoising steps move the block partition.

    The middle ``round(unshifted_fraction · num_steps)`` steps do not shift; the remaining steps are
    split between the start and the end, the start getting the odd one (it decides lip sync, identity
    and large motion).

    Args:
        num_steps: Number of denoising steps.
        unshifted_fraction: Fraction of steps without a shift.

    Returns:
        ``num_steps`` booleans, ``True`` for early/late (shifting) steps.
    """
    middle = min(num_steps, int(math.floor(unshifted_fraction * num_steps + 0.5)))
    edge = num_steps - middle
    early = (edge + 1) // 2
    return [i < early or i >= early + middle for i in range(num_steps)]


def partition_offsets(num_steps: int, cfg: TAPSFConfig) -> list[int]:
    """Partition offset of every step: the accumulated shift, modulo the block size.

    ``offset_0 = 0``; ``offset_i = offset_{i−1} + shift`` when step ``i`` is a shifting step, else
    ``offset_{i−1}`` (see the module docstring for why).

    Args:
        num_steps: Number of denoising steps.
        cfg: Block size, shift and unshifted fraction.

    Returns:
        ``num_steps`` offsets in ``[0, block_size)``.
    """
    flags = shifting_steps(num_steps, cfg.unshifted_fraction)
    offsets, total = [], 0
    for i, shifted in enumerate(flags):
        if i > 0 and shifted:
            total += cfg.shift
        offsets.append(total % cfg.block_size)
    return offsets


def block_plan(num_frames: int, block_size: int, offset: int = 0, wrap: bool = False) -> list[torch.Tensor]:
    """Blocks of one denoising step: global latent frame indices of each block.

    The grid puts block ``k`` at ``[k·block_size − offset, (k+1)·block_size − offset)``. Without
    ``wrap``, a block sticking out of ``[0, T)`` is moved inside (to ``[0, block_size)`` at the start,
    ``[T − block_size, T)`` at the end) so that it overlaps its neighbour; every block then has exactly
    ``min(block_size, T)`` contiguous frames. With ``wrap`` the indices are taken modulo ``T``
    (Sonic); a video shorter than a block is then one block.

    Args:
        num_frames: Latent frames ``T`` of the whole video.
        block_size: Latent frames per block.
        offset: Partition offset of this step (any integer; used modulo ``block_size``).
        wrap: Circular blocks instead of overlapping boundary blocks.

    Returns:
        Blocks in order, each a 1-D int64 tensor of ascending (with ``wrap``: cyclic) frame indices.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames}: must be >= 1")
    if block_size < 1:
        raise ValueError(f"block_size={block_size}: must be >= 1")
    size = min(block_size, num_frames)
    if size == num_frames:
        return [torch.arange(num_frames)]
    offset %= block_size
    start = -offset
    blocks: list[torch.Tensor] = []
    if wrap:
        # Sonic: blocks at k·block_size − offset for k·block_size < T, indices modulo T.
        for k in range(math.ceil(num_frames / block_size)):
            blocks.append(torch.arange(k * block_size + start, k * block_size + start + size) % num_frames)
        return blocks
    seen: set[int] = set()
    k = 0
    while k * block_size + start < num_frames:
        lo = min(max(k * block_size + start, 0), num_frames - size)
        if lo not in seen:
            seen.add(lo)
            blocks.append(torch.arange(lo, lo + size))
        k += 1
    return blocks


class TAPSFSchedule:
    """Blocks of every denoising step for a video of ``num_frames`` latent frames.

    Args:
        num_frames: Latent frames ``T``.
        num_steps: Denoising steps.
        cfg: Block schedule.
    """

    def __init__(self, num_frames: int, num_steps: int, cfg: TAPSFConfig | None = None):
        self.cfg = cfg or TAPSFConfig()
        self.num_frames = num_frames
        self.num_steps = num_steps
        self.shifting = shifting_steps(num_steps, self.cfg.unshifted_fraction)
        self.offsets = partition_offsets(num_steps, self.cfg)

    def blocks(self, step: int) -> list[torch.Tensor]:
        """Blocks (global latent frame indices, 1-D int64) of denoising step ``step``."""
        return block_plan(self.num_frames, self.cfg.block_size, self.offsets[step], self.cfg.wrap)


def frame_coverage(blocks: Sequence[torch.Tensor], num_frames: int) -> torch.Tensor:
    """How many blocks evaluate each latent frame.

    Args:
        blocks: Global frame indices per block.
        num_frames: Latent frames ``T``.

    Returns:
        ``[T]`` int64 counts.
    """
    counts = torch.zeros(num_frames, dtype=torch.int64)
    for idx in blocks:
        counts.index_add_(0, idx.cpu(), torch.ones_like(idx, device="cpu"))
    return counts


def _contiguous_range(idx: torch.Tensor) -> tuple[int, int] | None:
    lo, n = int(idx[0]), idx.numel()
    if int(idx[-1]) == lo + n - 1 and (n == 1 or bool((idx[1:] - idx[:-1] == 1).all())):
        return lo, n
    return None


def take_frames(x: torch.Tensor, frame_indices: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """Frames ``frame_indices`` of ``x`` along ``dim`` (a view when they are contiguous).

    Args:
        x: Any tensor with a frame axis, e.g. latents ``[B, C, T, H, W]`` (``dim=2``).
        frame_indices: 1-D int64 global frame indices.
        dim: The frame axis.

    Returns:
        ``x`` with ``len(frame_indices)`` frames along ``dim``.
    """
    span = _contiguous_range(frame_indices)
    if span is not None:
        return x.narrow(dim, span[0], span[1])
    return x.index_select(dim, frame_indices.to(x.device))


def slice_block(x: torch.Tensor, frame_indices: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Cut a block's part out of a per-frame or per-token tensor.

    Works for anything laid out along dim 1 as ``T`` frames of ``n`` tokens each, frame-major
    (:func:`trainer.model.sequence.patchify` order): per-token timesteps or masks ``[B, T·H·W]``,
    tokens ``[B, T·H·W, C]``, coordinates after ``movedim``, and per-frame tensors ``[B, T, …]``
    (``n = 1``).

    Args:
        x: ``[B, T·n, …]``.
        frame_indices: 1-D int64 global latent frame indices of the block.
        num_frames: ``T``.

    Returns:
        ``[B, len(frame_indices)·n, …]`` in the block's frame order.

    Raises:
        ValueError: ``x.shape[1]`` is not a multiple of ``num_frames``.
    """
    total = x.shape[1]
    if total % num_frames:
        raise ValueError(f"dim 1 of size {total} is not {num_frames} frames of equal token count")
    per_frame = total // num_frames
    grouped = x.reshape(x.shape[0], num_frames, per_frame, *x.shape[2:])
    return take_frames(grouped, frame_indices, dim=1).reshape(x.shape[0], -1, *x.shape[2:])


def block_video_coords(
    frame_indices: torch.Tensor,
    batch_size: int,
    height: int,
    width: int,
    fps: torch.Tensor,
    spatial_compression: int = 32,
    temporal_compression: int = 8,
) -> torch.Tensor:
    """RoPE coordinates of a block's video tokens in the *global* frame coordinate space.

    Token ``(j, r, c)`` of the block gets the coordinates a full-video forward would give global
    latent frame ``frame_indices[j]`` (:func:`trainer.model.sequence.grid_coords`).

    Args:
        frame_indices: 1-D int64 global latent frame indices of the block (``t`` of them).
        batch_size: ``B``.
        height: Latent rows ``H``.
        width: Latent columns ``W``.
        fps: Frame rate per sample ``[B]``.
        spatial_compression: Pixels per token side.
        temporal_compression: Video frames per latent frame.

    Returns:
        ``[B, 3, t·H·W]`` float32.
    """
    local, rows, cols = video_token_grid(batch_size, frame_indices.numel(), height, width, fps.device)
    frames = frame_indices.to(fps.device)[local]
    return grid_coords(frames, rows, cols, fps, spatial_compression, temporal_compression)


def blockwise_velocity(latents: torch.Tensor, blocks: Sequence[torch.Tensor], fn: BlockFn) -> torch.Tensor:
    """Velocity of the whole video from per-block DiT calls, averaging frames seen by several blocks.

    Args:
        latents: ``[B, C, T, H, W]``.
        blocks: Global frame indices per block (together covering every frame).
        fn: ``fn(block_latents [B, C, t, H, W], frame_indices [t]) -> velocity [B, C, t, H, W]``;
            ``frame_indices`` are global latent frame indices (compute RoPE coordinates and slice
            per-token timesteps/masks from them: :func:`block_video_coords`, :func:`slice_block`).

    Returns:
        ``[B, C, T, H, W]`` velocity in ``latents.dtype``: per frame, the mean over the blocks that
        contain it (accumulated in float32).

    Raises:
        ValueError: Some frame is in no block, or ``fn`` returns the wrong shape.
    """
    num_frames = latents.shape[2]
    counts = frame_coverage(blocks, num_frames)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"latent frames {missing[:8]} are in no block")
    total = torch.zeros(latents.shape, dtype=torch.float32, device=latents.device)
    for idx in blocks:
        idx = idx.to(latents.device)
        out = fn(take_frames(latents, idx), idx)
        expected = (*latents.shape[:2], idx.numel(), *latents.shape[3:])
        if tuple(out.shape) != expected:
            raise ValueError(f"block fn returned {tuple(out.shape)}, expected {expected}")
        total.index_add_(2, idx, out.to(torch.float32))
        del out
    total /= counts.to(total.device, torch.float32).view(1, 1, -1, 1, 1)
    return total.to(latents.dtype)
