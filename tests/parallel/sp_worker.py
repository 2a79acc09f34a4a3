"""Process body of the sequence-parallel tests: one DiT forward/backward whole and sharded, compared.

Every rank builds the same tiny DiT and inputs, computes the unsharded reference itself, then runs the
same forward sharded over its sequence group and checks its shard of the output and its share of every
parameter gradient (summed over the group) against the reference.
"""

from __future__ import annotations

import os
from dataclasses import asdict

import torch
import torch.distributed as dist
from diffusers import LTXVideoTransformer3DModel

from trainer.config.schema import LTXTransformerArch
from trainer.model.audio_adapter import AudioAdapterConfig
from trainer.model.audio_windows import sample_audio_windows
from trainer.model.dit import AudioInputs, TalkingHeadDiT
from trainer.model.sequence import video_coords, video_token_grid
from trainer.parallel.mesh import build_mesh
from trainer.parallel.sequence import sequence_parallel

T, H, W = 3, 2, 3  # latent frames, rows, columns
# Reference tokens in front of the video tokens: 3 gives 21 tokens, so 2 and 4 Ulysses shards need padding;
# ring attention takes no padding mask and gets 2 (20 tokens).
NUM_REF = {"ulysses": 3, "ring": 2, "hybrid": 2}


def tiny_dit(heads: int, device: torch.device) -> TalkingHeadDiT:
    """A tiny audio-conditioned DiT with ``heads`` heads and a non-zero adapter output."""
    arch = LTXTransformerArch(
        in_channels=8,
        out_channels=8,
        num_attention_heads=heads,
        attention_head_dim=8,
        cross_attention_dim=8 * heads,
        num_layers=2,
        caption_channels=16,
    )
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(**asdict(arch))
    adapter = AudioAdapterConfig(
        window=5,
        feature_layers=3,
        feature_dim=8,
        feature_rate=50.0,
        adapter_dim=24,
        inner_dim=arch.inner_dim,
        num_heads=heads,
        head_dim=8,
        num_layers=2,
    )
    dit = TalkingHeadDiT(transformer, adapter)
    with torch.no_grad():  # zero-initialised adapter outputs would leave the adapter path untested
        for block in dit.transformer.transformer_blocks:
            block.audio_attn.to_out.weight.normal_(0, 0.2)
    return dit.to(device)


def make_inputs(device: torch.device, num_ref: int, bsz: int = 2):
    """References (no audio, gate 0, timestep 0) then video tokens; the same on every rank."""
    g = torch.Generator().manual_seed(1)
    video = T * H * W
    n = num_ref + video
    x = torch.randn(bsz, n, 8, generator=g)
    t = torch.rand(bsz, n, generator=g)
    t[:, :num_ref] = 0
    text = torch.randn(bsz, 4, 16, generator=g)
    text_mask = torch.ones(bsz, 4)
    text_mask[1, 3] = 0
    fps = torch.full((bsz,), 25.0)
    coords = video_coords(bsz, T, H, W, fps, torch.device("cpu"))
    coords = torch.cat([coords[:, :, :num_ref], coords], dim=2)
    feats = torch.randn(bsz, 40, 3, 8, generator=g)
    windows, valid = sample_audio_windows(feats, torch.full((bsz,), 40), fps, 8 * (T - 1) + 1, 5, 50.0)
    frame_idx = video_token_grid(bsz, T, H, W, torch.device("cpu"))[0]
    frame_idx = torch.cat([torch.full((bsz, num_ref), -1), frame_idx], dim=1)
    gate = torch.ones(bsz, n)
    gate[:, :num_ref] = 0
    audio = AudioInputs(windows.to(device), valid.to(device), frame_idx.to(device), gate.to(device))
    weight = torch.randn(bsz, n, 8, generator=g)
    return [a.to(device) for a in (x, t, text, text_mask, coords)], audio, weight.to(device)


def run(rank: int, world: int, port: int, sp_size: int, heads: int, mode: str, backend: str) -> None:
    """Compare sharded and whole forward/backward on this rank (raises on mismatch)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        dtype = torch.bfloat16 if mode != "ulysses" else torch.float32
        dit = tiny_dit(heads, device).to(dtype)
        (x, t, text, text_mask, coords), audio, weight = make_inputs(device, NUM_REF[mode])
        x, text, weight = x.to(dtype), text.to(dtype), weight.to(dtype)
        audio.windows = audio.windows.to(dtype)

        ref = dit(x, t, text, text_mask, coords, audio)
        (ref.float() * weight).sum().backward()
        ref_grads = {k: p.grad.clone() for k, p in dit.named_parameters() if p.grad is not None}
        dit.zero_grad(set_to_none=True)

        mesh = build_mesh(sp_size)
        sp = sequence_parallel(dit, mesh, mode, ulysses_degree=2 if mode == "hybrid" else 1)
        sp.state.valid_tokens = x.shape[1]
        out = dit(sp.shard(x), sp.shard(t), text, text_mask, sp.shard(coords, dim=2), sp.shard_audio(audio))
        (out.float() * sp.shard(weight)).sum().backward()

        atol, rtol = (1e-5, 1e-4) if dtype == torch.float32 else (3e-2, 3e-2)
        real = sp.shard(torch.ones(x.shape[:2], dtype=torch.bool, device=device))  # padding outputs are unused
        torch.testing.assert_close(out[real], sp.shard(ref.detach())[real], atol=atol, rtol=rtol)
        grads = {k: p.grad for k, p in dit.named_parameters() if p.grad is not None}
        assert grads.keys() == ref_grads.keys(), sorted(grads.keys() ^ ref_grads.keys())
        for name, grad in grads.items():
            # Each rank holds the gradient of its tokens' share of the loss; the group's sum is the whole.
            dist.all_reduce(grad, group=mesh.sp_group)
            torch.testing.assert_close(grad, ref_grads[name], atol=atol * 10, rtol=rtol * 10, msg=name)
    finally:
        dist.destroy_process_group()
