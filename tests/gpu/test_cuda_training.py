"""CUDA paths CI cannot run: bf16 mixed precision training and the adapter on the GPU (``-m gpu``)."""

import pytest
import torch

from tests.model.test_audio_adapter import adapted_and_base, make_inputs, randomise_out
from tests.train.conftest import tiny_overrides
from trainer.checkpoints import read_training_checkpoint
from trainer.train import run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_adapter_on_cuda_matches_cpu():
    _, dit = adapted_and_base()
    randomise_out(dit)
    x, t, text, text_mask, coords, audio = make_inputs()
    with torch.no_grad():
        cpu = dit(x, t, text, text_mask, coords, audio)
        dev = torch.device("cuda")
        dit = dit.to(dev)
        audio.windows, audio.window_valid = audio.windows.to(dev), audio.window_valid.to(dev)
        audio.token_frame_index, audio.gate = audio.token_frame_index.to(dev), audio.gate.to(dev)
        gpu = dit(x.to(dev), t.to(dev), text.to(dev), text_mask.to(dev), coords.to(dev), audio)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_stage1_trains_on_cuda(simple_shards, tmp_path, precision):
    overrides = tiny_overrides(
        simple_shards, tmp_path / "run", 3, "strategy.accelerator=gpu", f"strategy.precision={precision}"
    )
    result = run(overrides)
    assert read_training_checkpoint(result.last_checkpoint)["global_step"] == 3
    assert result.final_loss is not None and torch.isfinite(torch.tensor(result.final_loss))
