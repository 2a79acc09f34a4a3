"""DeepSpeed ZeRO-2/3 on CUDA with the LTX-Video block shape (32 heads x 128, hidden 4096), two blocks,
Muon + AdamW, bf16, through ``python -m trainer.train`` (``-m gpu``)."""

import os
import subprocess
import sys

import pytest
import torch

from tests.parallel.test_ulysses import free_port
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
