"""DeepSpeed ZeRO-2/3 on CUDA with the LTX-Video block shape (32 heads x 128, hidden 4096), two blocks,
Muon + AdamW, bf16, through ``python -m trainer.train`` (``-m gpu``)."""

import os
import subprocess
import sys

import pytest
import torch

from tests.ports import free_port
from tests.train.conftest import tiny_overrides
from trainer.checkpoints import read_training_checkpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LTX_BLOCKS = [
    "model.transformer.arch.num_attention_heads=32",
    "model.transformer.arch.attention_head_dim=128",
    "model.transformer.arch.cross_attention_dim=4096",
    "model.transformer.arch.num_layers=2",
    "model.gradient_checkpointing=true",
]


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_run_of_ltx_blocks_with_muon(simple_shards, stage, tmp_path):
    devices = min(torch.cuda.device_count(), 8)
    overrides = tiny_overrides(
        simple_shards,
        tmp_path / "run",
        3,
        "strategy=deepspeed_zero2",
        f"strategy.zero_stage={stage}",
        f"strategy.devices={devices}",
        *LTX_BLOCKS,
    )
    env = {**os.environ, "MASTER_PORT": str(free_port())}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", *overrides], capture_output=True, text=True, env=env, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpt = read_training_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert (tmp_path / "run" / "deepspeed_config.json").is_file()


# The 2B model's blocks (32 heads x 64, hidden 2048) and the 13B model's (32 heads x 128, hidden 4096).
BLOCKS = {
    "ltxv_2b": ["model=ltxv_2b", "model.transformer.arch.num_layers=2"],
    "ltxv_13b": ["model=ltxv_13b", "model.transformer.arch.num_layers=2"],
}


@pytest.mark.parametrize("model", sorted(BLOCKS))
def test_base_stage_full_finetuning_of_ltx_blocks(simple_shards, model, tmp_path):
    """stage=base (every DiT weight) on the LTX 2B/13B architectures, ZeRO-2 bf16 with Muon + AdamW."""
    devices = min(torch.cuda.device_count(), 8)
    overrides = tiny_overrides(
        simple_shards,
        tmp_path / "run",
        3,
        "stage=base",
        "strategy=deepspeed_zero2",
        f"strategy.devices={devices}",
        # A random DiT of the architecture (the weights are not on the machine); the tiny VAE and T5 of the
        # smoke test, with latents and captions sized for the big DiT's input and caption projections.
        "model.transformer.source=random",
        "model.vae.source=random",
        "model.text_encoder.source=random",
        "model.transformer.arch.in_channels=8",
        "model.transformer.arch.out_channels=8",
        "model.transformer.arch.caption_channels=32",
        "+model.vae.arch={latent_channels: 8, block_out_channels: [8, 8, 8, 8], "
        "decoder_block_out_channels: [8, 8, 8, 8], layers_per_block: [1, 1, 1, 1, 1], "
        "decoder_layers_per_block: [1, 1, 1, 1, 1]}",
        "+model.text_encoder.arch={vocab_size: 384, d_model: 32, d_kv: 16, d_ff: 64, num_layers: 1, num_heads: 2}",
        *BLOCKS[model],
    )
    env = {**os.environ, "MASTER_PORT": str(free_port())}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", *overrides], capture_output=True, text=True, env=env, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpt = read_training_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert not any("audio" in k or "lora" in k for k in ckpt["state_dict"])
    assert len(ckpt["state_dict"]) > 40 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
