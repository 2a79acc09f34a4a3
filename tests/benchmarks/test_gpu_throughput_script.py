"""benchmarks/gpu_throughput.py runs every stage end to end (functional check on CPU; no timing asserted)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_throughput.py"


@pytest.mark.slow
def test_gpu_throughput_script_reports_every_stage(capsys):
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--tiny", "--device", "cpu", "--steps", "1", "--warmup", "0"])
    assert '"benchmark": "gpu_throughput"' in capsys.readouterr().out
    base, one, two = report["stages"]
    assert (base["stage"], one["stage"], two["stage"]) == ("base", 1, 2)
    # The base stage trains every DiT weight (no adapter); stage 1 only the adapter.
    assert base["trainable_params"] == base["dit_params"] and one["trainable_params"] < one["dit_params"]
    # Stage 2 adds LoRA to the trainable set and identity reference tokens to the sequence.
    assert two["trainable_params"] > one["trainable_params"]
    assert two["tokens_per_sample"] == one["tokens_per_sample"] + 4
    for stage in (base, one, two):
        assert stage["video_tokens_per_s"] > 0 and stage["model_tflops_per_step"] >= 0
        assert stage["final_loss"] == pytest.approx(stage["final_loss"])  # finite (NaN != NaN)
