"""Training throughput of the audio-conditioned LTX DiT on one GPU: tokens/s, MFU and peak memory.

The base stage (``--stages 0``: every DiT weight trained, no adapter, identity reference tokens), stage 1
(the audio adapter trained, DiT frozen) and stage 2 (LoRA rank 128 on the DiT plus the adapter, with
identity reference tokens) at the paper's shape: batch 4 of 121 frames at 512x768 (16 latent frames
of 16x24 tokens: 6144 video tokens per clip), Whisper-small audio windows, 128 T5 tokens. The DiT is the
LTX-Video 13B architecture (32 heads x 128, hidden 4096) with ``--layers`` of its 48 blocks, randomly
initialised (a benchmark measures arithmetic, not weights). Each step is what training does with cached
latents: forward in bf16 autocast with gradient checkpointing, the contrastive flow-matching loss,
backward, AdamW-only clipping and the Muon+AdamW step.

MFU counts model FLOPs only (no checkpoint recomputation): per token 2P forward, 2P backward through the
activations and 2P_trainable for weight gradients, plus 12·N·d per layer for self-attention over N
tokens; divided by ``--peak-tflops`` (989: H100/H200 SXM dense bf16). Also reported: each stage's step
time relative to the first stage run in the same process. Prints one JSON object.

Usage: python benchmarks/gpu_throughput.py [--layers 4] [--steps 10] [--warmup 3] [--stages 0 1 2]
       python benchmarks/gpu_throughput.py --tiny --device cpu   # a quick functional run without a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, replace

import torch
from diffusers import LTXVideoTransformer3DModel

from trainer.config.compose import compose_config
from trainer.config.schema import LoRAConfig, LTXTransformerArch
from trainer.data.buckets import Compression
from trainer.model.audio_adapter import adapter_parameter_names
from trainer.model.audio_windows import sample_audio_windows
from trainer.model.dit import AudioInputs, TalkingHeadDiT, adapter_config
from trainer.model.lora import add_lora
from trainer.model.sequence import video_coords, video_token_grid
from trainer.objectives.contrastive import contrastive_sq_error
from trainer.optim import build_optimizer
from trainer.optim.clipping import clip_adamw_grad_norm


def model_config(tiny: bool):
    """(DiT arch, audio config, optim config, lora config, VAE factors) of the 13B recipe or its tiny stand-in."""
    cfg = compose_config("train", ["experiment=edityourself_stage2"] + (["model=tiny", "audio=tiny"] if tiny else []))
    arch = LTXTransformerArch(**cfg.model.transformer.arch)
    lora = LoRAConfig(**{**cfg.stage.lora, "rank": 4 if tiny else cfg.stage.lora.rank})
    return arch, cfg.audio, cfg.optim, lora, Compression.of(cfg.model.vae)


def build_dit(arch: LTXTransformerArch, audio, layers: int, stage: int, lora: LoRAConfig, device) -> TalkingHeadDiT:
    """The DiT with ``layers`` blocks as each stage trains it.

    Stage 0 (base): the plain DiT, every weight trainable. Stage 1: the adapter trains. Stage 2: LoRA and the
    adapter train.
    """
    arch = replace(arch, num_layers=layers)
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(**asdict(arch))
    if stage == 0:
        transformer.enable_gradient_checkpointing()
        return TalkingHeadDiT(transformer, None).to(device)
    dit = TalkingHeadDiT(transformer, adapter_config(audio, arch))
    transformer.requires_grad_(False)
    if stage == 2:
        add_lora(transformer, lora)
    names = set(adapter_parameter_names(transformer))
    for name, p in transformer.named_parameters():
        if name in names:
            p.requires_grad_(True)
    with torch.no_grad():  # a trained adapter: its zero-initialised output would leave its backward trivial
        for block in transformer.transformer_blocks:
            block.audio_attn.to_out.weight.normal_(0, 0.02)
    transformer.enable_gradient_checkpointing()
    return dit.to(device)


def make_inputs(
    arch, audio, vae: Compression, batch: int, frames: int, height: int, width: int, ref_tokens: int, device
):
    """Latent tokens (references first), timesteps, text, RoPE coordinates, audio and the loss target."""
    t_lat, h_lat, w_lat = vae.latent_frames(frames), height // vae.spatial, width // vae.spatial
    video = t_lat * h_lat * w_lat
    n = ref_tokens + video
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(batch, n, arch.in_channels, generator=g)
    timestep = torch.rand(batch, n, generator=g)
    timestep[:, :ref_tokens] = 0
    text = torch.randn(batch, 128, arch.caption_channels, generator=g)
    text_mask = torch.ones(batch, 128)
    fps = torch.full((batch,), 25.0)
    coords = video_coords(batch, t_lat, h_lat, w_lat, fps, torch.device("cpu"))
    coords = torch.cat([coords[:, :, :ref_tokens], coords], dim=2)
    rows = int(frames / 25.0 * audio.feature_rate)
    feats = torch.randn(batch, rows, audio.feature_layers, audio.feature_dim, generator=g)
    lengths = torch.full((batch,), rows)
    windows, valid = sample_audio_windows(feats, lengths, fps, frames, audio.window, audio.feature_rate)
    frame_index = video_token_grid(batch, t_lat, h_lat, w_lat, torch.device("cpu"))[0]
    frame_index = torch.cat([torch.full((batch, ref_tokens), -1), frame_index], dim=1)
    gate = torch.ones(batch, n)
    gate[:, :ref_tokens] = 0
    target = torch.randn(batch, video, arch.out_channels, generator=g)
    mask = torch.ones(batch, video)
    audio_in = AudioInputs(windows.to(device), valid.to(device), frame_index.to(device), gate.to(device))
    dense = [x.to(device) for x in (tokens, timestep, text, text_mask, coords, target, mask)]
    return dense, audio_in, video


def model_flops_per_step(dit: TalkingHeadDiT, tokens_per_sample: int, batch: int, layers: int, width: int) -> float:
    """Model FLOPs of one training step (see the module docstring)."""
    params = [p for n, p in dit.transformer.named_parameters()]
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    per_token = 4 * total + 2 * trainable + 12 * layers * tokens_per_sample * width
    return float(per_token * tokens_per_sample * batch)


def run_stage(stage: int, args, device) -> dict:
    """Time ``args.steps`` training steps of one stage."""
    arch, audio, optim_cfg, lora, vae = model_config(args.tiny)
    dit = build_dit(arch, audio, args.layers, stage, lora, device)
    dit.train()
    bundle = build_optimizer(dit.transformer, optim_cfg)
    ref_tokens = args.ref_tokens if stage in (0, 2) else 0
    (tokens, timestep, text, text_mask, coords, target, mask), audio_in, video = make_inputs(
        arch, audio, vae, args.batch, args.frames, args.height, args.width, ref_tokens, device
    )
    cuda = device.type == "cuda"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast:
            pred = dit(tokens, timestep, text, text_mask, coords, audio_in if stage else None)[:, ref_tokens:]
            total, _, count = contrastive_sq_error(pred.float(), target, mask, args.contrastive_lambda)
            loss = total.sum() / count.sum()
        loss.backward()
        clip_adamw_grad_norm(bundle.optimizer, optim_cfg.grad_clip_norm)
        bundle.optimizer.step()
        bundle.optimizer.zero_grad(set_to_none=True)
        bundle.scheduler.step()
        if cuda:
            torch.cuda.synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    n_tokens = ref_tokens + video
    flops = model_flops_per_step(dit, n_tokens, args.batch, args.layers, arch.inner_dim)
    trainable = sum(p.numel() for p in dit.parameters() if p.requires_grad)
    result = {
        "stage": stage if stage else "base",
        "trainable_params": trainable,
        "dit_params": sum(p.numel() for p in dit.transformer.parameters()),
        "tokens_per_sample": n_tokens,
        "step_s_median": round(step_s, 4),
        "video_tokens_per_s": round(args.batch * video / step_s, 1),
        "model_tflops_per_step": round(flops / 1e12, 3),
        "achieved_tflops": round(flops / step_s / 1e12, 2),
        "mfu": round(flops / step_s / (args.peak_tflops * 1e12), 4),
        "final_loss": round(float(loss), 5),
    }
    if cuda:
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del dit, bundle
    if cuda:
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> dict:
    """Run the stages and print (and return) the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4, help="blocks of the 13B DiT (48 in the full model)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--ref-tokens", type=int, default=576, help="stage-2 identity reference tokens per clip")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2], choices=[0, 1, 2], help="0: base")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--contrastive-lambda", type=float, default=0.05)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny model at 64x64x17 (functional check)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.layers, args.batch, args.frames, args.height, args.width, args.ref_tokens = 2, 2, 17, 64, 64, 4
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_throughput: no CUDA device; run on a GPU machine (or pass --tiny --device cpu)")
    stages = [run_stage(stage, args, device) for stage in args.stages]
    report = {
        "benchmark": "gpu_throughput",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "layers": args.layers,
        "shape": {"batch": args.batch, "frames": args.frames, "height": args.height, "width": args.width},
        "stages": stages,
        "step_time_vs_first": {
            str(s["stage"]): round(s["step_s_median"] / stages[0]["step_s_median"], 3) for s in stages
        },
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
