"""The demo pipeline end to end on a small corpus, and the shards it builds."""

import json

import numpy as np
import pytest
import webdataset as wds

from launch.demo import DemoConfig, main, run_demo
from trainer.data.decode import decode_sample
from trainer.data.schema import FeatureSpec


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig(
        out_dir=str(out),
        num_videos=2,
        duration_s=3.0,
        size=64,
        stage1_steps=4,
        stage2_steps=3,
        train_overrides=["loop.progress_bar=false", "data.num_workers=0"],
    )
    return run_demo(cfg)


@pytest.mark.slow
def test_demo_produces_every_output(demo_outputs):
    for name in (
        "stage1_checkpoint",
        "stage2_checkpoint",
        "export_audio_adapter",
        "export_lora_peft",
        "export_lora_diffusers",
        "export_lora_config",
        "export_audio_adapter_config",
    ):
        assert demo_outputs[name].is_file(), name
    assert (demo_outputs["stage1_export"] / "audio_adapter.safetensors").is_file()
    meta = json.loads(demo_outputs["export_audio_adapter_config"].read_text())
    assert meta["provenance"]["stage"] == "stage2_lora"


@pytest.mark.slow
def test_demo_shards_follow_the_schema_with_aligned_audio_and_outside_references(demo_outputs):
    shards = sorted(demo_outputs["shards"].glob("*.tar"))
    assert shards
    samples = [
        decode_sample(raw, FeatureSpec(layers=5, dim=32))
        for raw in wds.WebDataset(
            [str(s) for s in shards], shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False
        )
    ]
    assert len(samples) == 2 * 3  # two 3-s videos, 25-frame clips back to back (75 or 90 frames each)
    fps = sorted({s.fps for s in samples})
    assert set(fps) <= {25.0, 30.0}
    for s in samples:
        start, end = s.record["span"]
        assert end - start == 25 and s.frames.shape == (25, 64, 64, 3)
        assert s.whisper.shape[0] == int(np.ceil(25 / s.fps * 50 - 1e-6))
        assert s.ref_frames.shape[0] == 2
        # Identity references are the speaker outside the clip: they differ from every clip frame.
        for ref in s.ref_frames.astype(np.int16):
            assert min(np.abs(ref - f.astype(np.int16)).mean() for f in s.frames) > 0.5
        lower = s.lower_face_boxes
        assert np.all(lower[:, 2] > lower[:, 0]) and np.all(lower[:, 3] > lower[:, 1])
    assert len({s.key for s in samples}) == len(samples)


def test_demo_rejects_unknown_options(capsys):
    assert main(["num_vidoes=3"]) == 2
    assert "num_vidoes" in capsys.readouterr().err
