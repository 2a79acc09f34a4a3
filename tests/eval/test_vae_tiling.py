"""Temporal VAE tiling: 1+8k tile bookkeeping, exact linear blending, agreement with untiled coding."""

import math

import pytest
import torch

from eval.sampler.vae_tiling import (
    SlidingFrames,
    iter_tiled_decode,
    latent_tiles,
    tiled_decode,
    tiled_encode,
    tiled_encode_frames,
    tiled_encode_posterior,
)
from tests.model.test_backbone import TINY_VAE
from trainer.config.schema import VAEConfig
from trainer.model.vae import load_vae


@pytest.fixture(scope="module")
def tiny_vae():
    return load_vae(
        VAEConfig(source="random", arch=TINY_VAE, init_seed=0, spatial_compression=32, temporal_compression=8)
    )


class LocalStubVAE:
    """A VAE without temporal receptive field beyond its own latent group: tiling must be exact.

    Encoder: latent 0 = frame 0, latent k = mean of frames 8k-7..8k. Decoder: latent k gives frames
    ``(m + 1)·z_k`` for m = 0..7; a clip's first latent gives only its group's last frame ``8·z``.
    """

    temporal_compression_ratio = 8

    def __init__(self, constant_per_call: bool = False):
        self.calls = []
        self.constant_per_call = constant_per_call

    def encoder(self, x):
        self.calls.append(x.shape[2])
        lat = torch.cat([x[:, :, :1], x[:, :, 1:].unflatten(2, (-1, 8)).mean(3)], dim=2)
        if self.constant_per_call:
            return torch.full_like(lat, float(len(self.calls) - 1))
        return lat

    def decoder(self, z, temb=None):
        self.calls.append(z.shape[2])
        ramp = torch.arange(1, 9, dtype=z.dtype).view(1, 1, 1, 8, 1, 1)
        rest = (z[:, :, 1:, None] * ramp).flatten(2, 3)
        out = torch.cat([8 * z[:, :, :1], rest], dim=2)
        if self.constant_per_call:
            return torch.full_like(out, float(len(self.calls) - 1))
        return out


# --- tile plans ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_latents", [1, 5, 16, 17, 30, 64, 100])
def test_latent_tiles_cover_once_plus_overlaps(num_latents):
    tiles = latent_tiles(num_latents, 16, 3)
    assert tiles[0][0] == 0 and tiles[-1][1] == num_latents
    for (_, a1), (b0, b1) in zip(tiles, tiles[1:]):
        assert b0 == a1 - 3 and b1 > a1  # fixed overlap; every tile adds new frames
    assert all(hi - lo <= 16 for lo, hi in tiles)
    with pytest.raises(ValueError):
        latent_tiles(10, 3, 3)


# --- exact bookkeeping and blending with a stub VAE -----------------------------------------------


@pytest.mark.parametrize("num_latents", [2, 10, 17, 31, 40])
def test_tiled_coding_is_exact_for_a_local_vae(num_latents):
    g = torch.Generator().manual_seed(0)
    frames = 8 * (num_latents - 1) + 1
    video = torch.randn(1, 3, frames, 2, 2, generator=g)
    stub = LocalStubVAE()
    full_enc = stub.encoder(video)
    enc = tiled_encode(stub, video, tile_latents=8, overlap_frames=16)
    assert enc.shape == full_enc.shape == (1, 3, num_latents, 2, 2)
    torch.testing.assert_close(enc, full_enc, rtol=1e-6, atol=1e-6)
    z = torch.randn(1, 4, num_latents, 2, 2, generator=g)
    full_dec = stub.decoder(z)
    dec = tiled_decode(stub, z, tile_latents=8, overlap_frames=16)
    assert dec.shape == full_dec.shape == (1, 4, frames, 2, 2)
    torch.testing.assert_close(dec, full_dec, rtol=1e-6, atol=1e-6)


def test_tiles_respect_the_causal_1_plus_8k_structure():
    stub = LocalStubVAE()
    tiled_encode(stub, torch.zeros(1, 3, 8 * 39 + 1, 1, 1), tile_latents=16, overlap_frames=16)
    # Tiles (0,16) (14,30) (28,40): 8*15+1 frames, then 8*(hi-lo)+1 frames including the dropped
    # first-frame latent.
    assert stub.calls == [121, 129, 97]
    assert all((n - 1) % 8 == 0 for n in stub.calls)
    stub = LocalStubVAE()
    out = tiled_decode(stub, torch.zeros(1, 2, 40, 1, 1), tile_latents=16, overlap_frames=16)
    assert stub.calls == [16, 16, 14]  # tiles (0,16) (13,29) (26,40): 3 latents = 17 frames shared
    assert out.shape[2] == 8 * 39 + 1


def test_decode_blend_is_linear_over_the_16_frame_overlap_and_exact_on_constants():
    stub = LocalStubVAE(constant_per_call=True)  # tile i decodes to the constant i
    z = torch.zeros(1, 1, 30, 1, 1)
    out = tiled_decode(stub, z, tile_latents=12, overlap_frames=16)[0, 0, :, 0, 0]
    # Tiles (0,12) (9,21) (18,30) decode to frames [0,88] [72,160] [144,232]; overlaps of 17 frames.
    j = torch.arange(17, dtype=torch.float32)
    expected = torch.cat(
        [torch.zeros(72), (j + 1) / 18, torch.ones(144 - 89), 1 + (j + 1) / 18, torch.full((233 - 161,), 2.0)]
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    # Tiles that agree blend to their common value.
    for tiles_value in (0.0, 3.5, -1e3):
        const = LocalStubVAE()
        const.decoder = lambda z, temb=None, v=tiles_value: torch.full((1, 1, 8 * (z.shape[2] - 1) + 1, 1, 1), v)
        out = tiled_decode(const, z, tile_latents=12, overlap_frames=16)
        torch.testing.assert_close(out, torch.full_like(out, tiles_value), rtol=1e-7, atol=0)


def test_encode_blend_is_linear_over_the_two_shared_latents():
    stub = LocalStubVAE(constant_per_call=True)
    out = tiled_encode(stub, torch.zeros(1, 3, 8 * 23 + 1, 1, 1), tile_latents=10, overlap_frames=16)
    # Tiles (0,10) (8,18) (16,24): shared latents 8,9 and 16,17 with weights 1/3, 2/3 for the later tile.
    expected = torch.tensor([0.0] * 8 + [1 / 3, 2 / 3] + [1.0] * 6 + [1 + 1 / 3, 1 + 2 / 3] + [2.0] * 6)
    torch.testing.assert_close(out[0, 0, :, 0, 0], expected, rtol=0, atol=1e-6)


def test_streamed_coding_equals_whole_video_coding_and_holds_one_tile():
    g = torch.Generator().manual_seed(2)
    video = torch.randn(1, 3, 8 * 39 + 1, 2, 2, generator=g)
    z = torch.randn(1, 4, 40, 2, 2, generator=g)
    whole_enc = tiled_encode(LocalStubVAE(constant_per_call=True), video, 12, 16)
    whole_dec = tiled_decode(LocalStubVAE(constant_per_call=True), z, tile_latents=12, overlap_frames=16)
    frames = iter(video[0].unbind(1))  # one [3, H, W] frame at a time, as a decoder delivers them
    window = SlidingFrames(frames, lambda w: w.permute(1, 0, 2, 3)[None])
    held = []
    stub = LocalStubVAE(constant_per_call=True)

    def load(start, stop):
        out = window(start, stop)
        held.append(len(window.window))
        return out

    assert torch.equal(tiled_encode_frames(stub, load, video.shape[2], 12, 16), whole_enc)
    assert max(held) <= 8 * 12 + 1  # never more than one tile of frames
    chunks = list(iter_tiled_decode(LocalStubVAE(constant_per_call=True), z, None, 12, 16))
    assert len(chunks) > 2 and torch.equal(torch.cat(chunks, dim=2), whole_dec)
    with pytest.raises(ValueError, match="after the window moved"):
        window(0, 5)


def test_bad_arguments_are_errors():
    stub = LocalStubVAE()
    with pytest.raises(ValueError, match=r"8k \+ 1"):
        tiled_encode(stub, torch.zeros(1, 3, 20, 1, 1))
    with pytest.raises(ValueError, match=r"multiple of 8"):
        tiled_decode(stub, torch.zeros(1, 2, 30, 1, 1), overlap_frames=12)
    with pytest.raises(ValueError, match=r"must be >= 7"):
        tiled_decode(stub, torch.zeros(1, 2, 30, 1, 1), tile_latents=6)


# --- the tiny random LTX VAE --------------------------------------------------------------------


def test_shapes_with_the_tiny_vae(tiny_vae):
    video = torch.rand(1, 3, 8 * 20 + 1, 64, 32) * 2 - 1
    mean, logvar = tiled_encode_posterior(tiny_vae, video, tile_latents=8)
    assert mean.shape == logvar.shape == (1, 8, 21, 2, 1)
    assert tiled_decode(tiny_vae, mean, tile_latents=8).shape == (1, 3, 161, 64, 32)
    # Short inputs (one tile) are the untiled result.
    short = video[:, :, :57]
    with torch.no_grad():
        torch.testing.assert_close(tiled_encode(tiny_vae, short), tiny_vae.encoder(short), rtol=0, atol=0)


def test_tiled_decode_equals_untiled_where_the_receptive_field_permits(tiny_vae):
    g = torch.Generator().manual_seed(0)
    num_latents, tile = 48, 24
    z = torch.randn(1, 8, num_latents, 1, 1, generator=g)
    with torch.no_grad():
        full = tiny_vae.decoder(z)
        # Receptive field: frames that change when latent c changes; by translation (8 frames per
        # latent) frame f depends on latent t iff f - 8t lies in [lo, hi].
        c = 24
        bumped = z.clone()
        bumped[:, :, c] += 1.0
        changed = torch.nonzero((tiny_vae.decoder(bumped) - full).abs().amax(dim=(0, 1, 3, 4)) > 0).flatten()
    lo, hi = int(changed.min()) - 8 * c, int(changed.max()) - 8 * c
    tiled = tiled_decode(tiny_vae, z, tile_latents=tile, overlap_frames=16)
    assert tiled.shape == full.shape == (1, 3, 8 * (num_latents - 1) + 1, 32, 32)
    tiles = latent_tiles(num_latents, tile, 3)

    def exact_in(f, s, e):  # every latent frame f depends on lies in the tile (or the video edge is shared)
        first, last = math.ceil((f - hi) / 8), math.floor((f - lo) / 8)
        return (s == 0 or first >= s) and (e == num_latents or last <= e - 1)

    exact = [f for f in range(full.shape[2]) if all(exact_in(f, s, e) for s, e in tiles if 8 * s <= f <= 8 * (e - 1))]
    # The tiny decoder sees about +-9 latents; 24-latent tiles leave exact stretches in every tile.
    assert hi - lo > 8 * 10
    assert any(f < 8 * 21 for f in exact) and any(8 * 24 < f < 8 * 42 for f in exact)
    diff = (tiled - full).abs().amax(dim=(0, 1, 3, 4))
    assert float(diff[exact].max()) < 1e-5
    inexact = sorted(set(range(full.shape[2])) - set(exact))
    assert float(diff[inexact].max()) > 1e-4  # near borders the blend is an approximation, not exact


def test_tiled_encode_equals_untiled_where_the_causal_receptive_field_permits(tiny_vae):
    g = torch.Generator().manual_seed(1)
    num_latents, tile = 48, 24
    video = torch.rand(1, 3, 8 * (num_latents - 1) + 1, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        full = tiny_vae.encoder(video)
        c = 24  # perturb every frame of latent group c: latents depending on it are c .. c + reach
        bumped = video.clone()
        bumped[:, :, 8 * c - 7 : 8 * c + 1] += 0.5
        changed = torch.nonzero((tiny_vae.encoder(bumped) - full).abs().amax(dim=(0, 1, 3, 4)) > 0).flatten()
    assert int(changed.min()) == c  # causal: no latent before the perturbed group changes
    reach = int(changed.max()) - c
    tiled = tiled_encode(tiny_vae, video, tile_latents=tile, overlap_frames=16)
    assert tiled.shape == full.shape == (1, 16, num_latents, 1, 1)
    tiles = latent_tiles(num_latents, tile, 2)
    exact = [t for t in range(num_latents) if all(s == 0 or t - reach >= s for s, e in tiles if s <= t < e)]
    # The first tile is causal-exact (it sees the video's own start); later tiles after ``reach``.
    assert exact[: tile - 2] == list(range(tile - 2))
    assert any(t >= tile for t in exact)
    diff = (tiled - full).abs().amax(dim=(0, 1, 3, 4))
    assert float(diff[exact].max()) < 1e-5
