"""Temporal tiling of the LTX Video-VAE for long videos (paper appendix, "VAE Tiling and Latent Frame Blocking").

The LTX VAE maps ``F = 8k + 1`` video frames to ``k + 1`` latent frames: latent 0 encodes frame 0
alone and latent ``τ ≥ 1`` encodes frames ``8τ − 7 … 8τ``. Tiles are ranges of latent frames
``[s, e)`` and follow that causal ``1 + 8k`` structure:

* **encode**: tile ``[s, e)`` encodes video frames ``8(s − 1) … 8(e − 1)`` (``0 … 8(e − 1)`` for
  ``s = 0``), an ``8(e − s) + 1``-frame clip whose first latent (frame ``8(s − 1)`` on its own, a
  "first frame" the full video does not have) is dropped; the others are global latents ``s … e − 1``.
* **decode**: tile ``[s, e)`` decodes to video frames ``8s … 8(e − 1)`` (its first latent gives one
  frame, the last frame of that latent's group; the others eight each).

Consecutive tiles overlap by ``overlap_frames`` (16) video frames: their video spans share
``overlap_frames + 1`` frames (both ends of a ``1 + 8k`` span are latent-group boundaries), which is
``overlap_frames / 8`` latents for encoding and ``overlap_frames / 8 + 1`` latents for decoding. The
overlap is blended linearly, in latent space for encoding (over the shared latents) and in pixel
space for decoding (over the shared frames): at position ``j`` of an ``n``-long overlap the later tile
weighs ``(j + 1)/(n + 1)`` and the earlier ``(n − j)/(n + 1)``; the result is divided by the weight sum,
so tiles that agree give their common value. The earlier tile gets the larger weight at the start of
an overlap, where the later tile has the least causal context.

Away from tile borders (farther than the networks' temporal receptive field) tiled and untiled
results agree to float precision; near borders the blend is an approximation. Spatial tiling is not
done here (diffusers' ``vae.enable_tiling()`` spatial path is independent of this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLLTXVideo


@dataclass(frozen=True)
class TemporalTile:
    """One tile: latent frames ``[start, stop)`` and its overlaps with its neighbours.

    Attributes:
        start: First global latent frame.
        stop: One past the last global latent frame.
        overlap_before: Shared units (latents when encoding, video frames when decoding) with the
            previous tile.
        overlap_after: Shared units with the next tile.
    """

    start: int
    stop: int
    overlap_before: int = 0
    overlap_after: int = 0


def latent_tiles(num_latents: int, tile_latents: int, overlap_latents: int) -> list[tuple[int, int]]:
    """Latent frame ranges of temporal tiles with a fixed overlap.

    Tiles start every ``tile_latents − overlap_latents`` latents; the last one ends at ``T`` (it may be
    shorter) and always has frames no other tile has.

    Args:
        num_latents: Latent frames ``T``.
        tile_latents: Latent frames per tile.
        overlap_latents: Latent frames shared by consecutive tiles.

    Returns:
        ``(start, stop)`` ranges covering ``[0, T)``.
    """
    if overlap_latents < 0 or tile_latents <= overlap_latents:
        raise ValueError(f"tile_latents={tile_latents} must exceed overlap_latents={overlap_latents} >= 0")
    tiles = [(0, min(tile_latents, num_latents))]
    while tiles[-1][1] < num_latents:
        start = tiles[-1][1] - overlap_latents
        tiles.append((start, min(start + tile_latents, num_latents)))
    return tiles


def _ramp_weights(length: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """``[length]`` float32 blend weights: linear ramps over the first ``before`` and last ``after`` entries."""
    w = torch.ones(length, dtype=torch.float32, device=device)
    if before:
        w[:before] *= torch.arange(1, before + 1, dtype=torch.float32, device=device) / (before + 1)
    if after:
        w[length - after :] *= torch.arange(after, 0, -1, dtype=torch.float32, device=device) / (after + 1)
    return w


class _Blend:
    """Running weighted sum of temporal tiles ``[B, C, t, H, W]`` along dim 2, linear ramps on the overlaps.

    It covers frames ``[offset, offset + length)``; :meth:`extend` grows the end and :meth:`pop` hands out
    finished frames from the start, so a stream of tiles never holds more than its current span.
    """

    def __init__(self, length: int, offset: int = 0):
        self.length = length
        self.offset = offset
        self.out: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None

    def add(self, tile: torch.Tensor, start: int, ramp_in: int, ramp_out: int) -> None:
        """Add ``tile`` at global frame ``start``, ramping its first ``ramp_in`` and last ``ramp_out`` frames."""
        if self.out is None:
            shape = (tile.shape[0], tile.shape[1], self.length, *tile.shape[3:])
            self.out = torch.zeros(shape, dtype=torch.float32, device=tile.device)
            self.weight = torch.zeros(self.length, dtype=torch.float32, device=tile.device)
        n = tile.shape[2]
        w = _ramp_weights(n, ramp_in, ramp_out, tile.device)
        at = start - self.offset
        self.out[:, :, at : at + n] += tile.float() * w.view(1, 1, -1, 1, 1)
        self.weight[at : at + n] += w

    def extend(self, stop: int) -> None:
        """Cover frames up to global ``stop`` (zeros where no tile has been added yet)."""
        grow = stop - self.offset - self.length
        if grow <= 0:
            return
        self.length += grow
        if self.out is not None:
            pad = torch.zeros(
                (*self.out.shape[:2], grow, *self.out.shape[3:]), dtype=self.out.dtype, device=self.out.device
            )
            self.out = torch.cat([self.out, pad], dim=2)
            self.weight = torch.cat(
                [self.weight, torch.zeros(grow, dtype=self.weight.dtype, device=self.weight.device)]
            )

    def pop(self, stop: int, dtype: torch.dtype) -> torch.Tensor:
        """The blended frames ``[offset, stop)`` (each a weighted mean over its tiles), removed from the sum."""
        n = stop - self.offset
        done = (self.out[:, :, :n] / self.weight[:n].view(1, 1, -1, 1, 1)).to(dtype)
        self.out, self.weight = self.out[:, :, n:], self.weight[n:]
        self.offset, self.length = stop, self.length - n
        return done

    def result(self, dtype: torch.dtype) -> torch.Tensor:
        """The blended sequence ``[B, C, length, H, W]``: each frame's weighted mean over its tiles."""
        return (self.out / self.weight.view(1, 1, -1, 1, 1)).to(dtype)


def _check_overlap(overlap_frames: int, temporal_compression: int) -> int:
    if overlap_frames < 0 or overlap_frames % temporal_compression:
        raise ValueError(f"overlap_frames={overlap_frames}: must be a multiple of {temporal_compression} >= 0")
    return overlap_frames // temporal_compression


@torch.no_grad()
def tiled_encode(
    vae: AutoencoderKLLTXVideo,
    video: torch.Tensor,
    tile_latents: int = 16,
    overlap_frames: int = 16,
) -> torch.Tensor:
    """Encode a long video in temporal tiles; returns the encoder's moments.

    Args:
        vae: The LTX VAE (its encoder is called directly; its own tiling switches are ignored).
        video: ``[B, 3, F, H, W]`` in ``[−1, 1]``, ``F = 8k + 1``.
        tile_latents: Latent frames each tile produces (``8·tile_latents + 1`` video frames per tile).
        overlap_frames: Video frames shared by consecutive tiles (multiple of 8).

    Returns:
        Moments ``[B, 2C, k + 1, H/32, W/32]`` (mean then log-variance channels, as
        ``vae.encode(...).latent_dist.parameters``); see :func:`tiled_encode_posterior`.
    """
    return tiled_encode_frames(
        vae, lambda start, stop: video[:, :, start:stop], video.shape[2], tile_latents, overlap_frames, video.dtype
    )


@torch.no_grad()
def tiled_encode_frames(
    vae: AutoencoderKLLTXVideo,
    load: Callable[[int, int], torch.Tensor],
    num_frames: int,
    tile_latents: int = 16,
    overlap_frames: int = 16,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """:func:`tiled_encode` of a video that is never whole in memory: each tile's frames come from ``load``.

    The tiles ask for ranges whose starts only increase (consecutive ranges overlap by ``overlap_frames + 1``),
    so ``load`` can serve them from a sliding buffer of one tile (:class:`SlidingFrames`); memory then does
    not grow with the video's length.

    Args:
        vae: The LTX VAE.
        load: ``load(start, stop)`` → video frames ``[start, stop)`` as ``[B, 3, stop − start, H, W]`` in [−1, 1].
        num_frames: ``F = 8k + 1``.
        tile_latents: Latent frames each tile produces.
        overlap_frames: Video frames shared by consecutive tiles (multiple of 8).
        dtype: dtype of the result.

    Returns:
        Moments ``[B, 2C, k + 1, H/32, W/32]``.
    """
    s = vae.temporal_compression_ratio
    if (num_frames - 1) % s:
        raise ValueError(f"{num_frames} video frames: expected {s}k + 1")
    num_latents = (num_frames - 1) // s + 1
    overlap = _check_overlap(overlap_frames, s)
    if tile_latents < 2 * overlap + 1:
        raise ValueError(
            f"tile_latents={tile_latents}: must be >= {2 * overlap + 1} for a {overlap_frames}-frame overlap"
        )
    tiles = latent_tiles(num_latents, tile_latents, overlap)
    if len(tiles) == 1:
        return vae.encoder(load(0, num_frames))
    acc = _Blend(num_latents)
    for i, (lo, hi) in enumerate(tiles):
        first = max(s * (lo - 1), 0)
        enc = vae.encoder(load(first, s * (hi - 1) + 1))
        if lo > 0:
            enc = enc[:, :, 1:]  # the tile's own first-frame latent; not a latent of the full video
        acc.add(enc, lo, overlap if i > 0 else 0, overlap if i < len(tiles) - 1 else 0)
    return acc.result(dtype)


class SlidingFrames:
    """Serves ranges ``[start, stop)`` with non-decreasing starts from a stream of frames, holding only the window.

    Args:
        frames: Frames in order, each ``[3, H, W]`` (or anything :func:`torch.stack` takes).
        convert: Turns a stacked window ``[n, …]`` into what the consumer wants (e.g. the VAE input).
    """

    def __init__(self, frames: Iterator[torch.Tensor], convert: Callable[[torch.Tensor], torch.Tensor]):
        self.frames = frames
        self.convert = convert
        self.start = 0  # index of self.window[0]
        self.window: list[torch.Tensor] = []

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``[start, stop)``; frames before ``start`` are dropped for good."""
        if start < self.start:
            raise ValueError(f"frames from {start} were requested after the window moved to {self.start}")
        drop = min(start - self.start, len(self.window))
        del self.window[:drop]
        self.start += drop
        while self.start + len(self.window) < stop:
            frame = next(self.frames, None)
            if frame is None:
                raise ValueError(f"the frame stream ended at {self.start + len(self.window)}, {stop} were requested")
            if self.start + len(self.window) >= start:
                self.window.append(frame)
            else:
                self.start += 1  # a skipped frame (start beyond the window)
        return self.convert(torch.stack(self.window[: stop - start]))


def tiled_encode_posterior(
    vae: AutoencoderKLLTXVideo, video: torch.Tensor, tile_latents: int = 16, overlap_frames: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance of raw latents, encoded in temporal tiles.

    Args:
        vae: The LTX VAE.
        video: ``[B, 3, F, H, W]`` in ``[−1, 1]``, ``F = 8k + 1``.
        tile_latents: Latent frames per tile.
        overlap_frames: Video frames shared by consecutive tiles.

    Returns:
        ``(mean, logvar)``, each ``[B, C, k + 1, H/32, W/32]`` float32 (not normalised), like
        :func:`trainer.model.vae.encode_posterior`.
    """
    moments = tiled_encode(vae, video, tile_latents, overlap_frames)
    mean, logvar = moments.float().chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


@torch.no_grad()
def tiled_decode(
    vae: AutoencoderKLLTXVideo,
    latents: torch.Tensor,
    temb: torch.Tensor | None = None,
    tile_latents: int = 16,
    overlap_frames: int = 16,
) -> torch.Tensor:
    """Decode long raw latents in temporal tiles.

    Args:
        vae: The LTX VAE (its decoder is called directly).
        latents: Raw (denormalised) latents ``[B, C, T, h, w]``.
        temb: Decoder timestep ``[B]`` for timestep-conditioned decoders, else ``None``.
        tile_latents: Latent frames per tile (``8·tile_latents − 7`` video frames per tile).
        overlap_frames: Video frames shared by consecutive tiles, less one (multiple of 8): tiles share
            ``overlap_frames / 8 + 1`` latents and ``overlap_frames + 1`` decoded frames.

    Returns:
        Video ``[B, 3, 8(T − 1) + 1, 32h, 32w]``.
    """
    return torch.cat(list(iter_tiled_decode(vae, latents, temb, tile_latents, overlap_frames)), dim=2)


@torch.no_grad()
def iter_tiled_decode(
    vae: AutoencoderKLLTXVideo,
    latents: torch.Tensor,
    temb: torch.Tensor | None = None,
    tile_latents: int = 16,
    overlap_frames: int = 16,
) -> Iterator[torch.Tensor]:
    """:func:`tiled_decode` as a stream: each run of frames is yielded as soon as no later tile touches it.

    Only one tile and its overlap with the next are held, so decoding a long video needs the memory of one
    tile; the frames equal :func:`tiled_decode`'s exactly (same sums, same order).

    Args:
        vae: The LTX VAE.
        latents: Raw latents ``[B, C, T, h, w]``.
        temb: Decoder timestep ``[B]`` or ``None``.
        tile_latents: Latent frames per tile.
        overlap_frames: Video frames shared by consecutive tiles, less one (multiple of 8).

    Yields:
        Consecutive video chunks ``[B, 3, n, 32h, 32w]`` (in ``latents.dtype``) covering frames
        ``0 … 8(T − 1)`` in order.
    """
    s = vae.temporal_compression_ratio
    num_latents = latents.shape[2]
    overlap = _check_overlap(overlap_frames, s) + 1
    if tile_latents < 2 * overlap + 1:
        raise ValueError(
            f"tile_latents={tile_latents}: must be >= {2 * overlap + 1} for a {overlap_frames}-frame overlap"
        )
    tiles = latent_tiles(num_latents, tile_latents, overlap)
    if len(tiles) == 1:
        yield vae.decoder(latents, temb)
        return
    blend = s * (overlap - 1) + 1  # shared decoded frames
    acc: _Blend | None = None
    for i, (lo, hi) in enumerate(tiles):
        dec = vae.decoder(latents[:, :, lo:hi], temb)
        f0, f1 = s * lo, s * (hi - 1) + 1
        if dec.shape[2] != f1 - f0:
            raise RuntimeError(f"decoder gave {dec.shape[2]} frames for {hi - lo} latents, expected {f1 - f0}")
        last = i == len(tiles) - 1
        if acc is None:
            acc = _Blend(f1 - f0, offset=f0)
        acc.extend(f1)
        acc.add(dec, f0, blend if i > 0 else 0, 0 if last else blend)
        del dec
        # Frames before the next tile's first are final.
        ready = f1 if last else s * tiles[i + 1][0]
        yield acc.pop(ready, latents.dtype)
