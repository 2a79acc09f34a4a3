"""The demo pipeline end to end on a small corpus, and the shards it builds."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from launch.demo import main, run_demo
from launch.demo_config import DemoConfig
from trainer.checkpoints import read_training_checkpoint
from trainer.data.decode import decode_sample
from trainer.data.schema import FeatureSpec


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig(
        out_dir=str(out),
        num_videos=2,
        heldout_videos=3,
        duration_s=3.0,
        size=64,
        zoom=1.5,  # at 64 px the demo's closer framing loses MediaPipe's face on some held-out people
        fps=[25.0],  # clips at their source's rate have a frame-exact true mouth opening (the audio probe)
        vae_image_steps=2,
        vae_clip_steps=2,
        vae_decoder_steps=2,
        base_steps=3,
        stage1_steps=4,
        stage2_steps=3,
        scale_steps=2,
        validate_every=2,
        sample_steps=2,
        dub_seconds=0.48,  # eval.dub's step: 12 frames of each raw video at 25 fps
        train_overrides=["loop.progress_bar=false", "data.num_workers=0"],
        base_overrides=["loop.progress_bar=false", "data.num_workers=0"],
    )
    return run_demo(cfg)


@pytest.mark.slow
def test_demo_produces_every_output(demo_outputs):
    for name in (
        "dub_video",
        "dub_ground_truth",
        "dub_strip",
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
    # The stages trained on talkdit's own base, loaded from its diffusers folder like LTX-Video.
    base = demo_outputs["base_model"]
    assert {"transformer", "vae", "text_encoder", "tokenizer"} <= {p.name for p in base.iterdir()}
    stage1 = read_training_checkpoint(demo_outputs["stage1_checkpoint"])["talkdit"]["config"]["model"]
    assert stage1["name"] == "tiny_base" and stage1["transformer"]["source"] == "diffusers"
    assert stage1["transformer"]["path"] == str(base)
    meta = json.loads(demo_outputs["export_audio_adapter_config"].read_text())
    assert meta["provenance"]["stage"] == "stage2_lora"
    # Validation ran during stage 1 (steps 2 and 4) and wrote its sampled clip.
    assert len(list((demo_outputs["stage1_run"] / "validation").glob("step*/*.mp4"))) == 2
    # The sampling step: a V2V clip of the source length and an edited clip 8 frames longer, with audio.
    import av

    for name, frames in (("sample_v2v", 25), ("sample_edited", 33), ("dub_video", 25), ("dub_ground_truth", 25)):
        with av.open(str(demo_outputs[name])) as container:
            assert len(container.streams.audio) == 1, name
            assert sum(1 for _ in container.decode(video=0)) == frames, name
    # The scale step: a DeepSpeed checkpoint folder from 2 ranks, one Ulysses group, at its last step.
    scaled = read_training_checkpoint(demo_outputs["scaled_checkpoint"])
    assert scaled["global_step"] == 2
    config = scaled["talkdit"]["config"]
    assert config["strategy"]["kind"] == "deepspeed" and config["strategy"]["devices"] == 2
    assert config["parallel"]["mode"] == "ulysses" and config["stage"]["name"] == "stage2_lora"


@pytest.mark.slow
def test_demo_dubs_raw_files_through_eval_dub(demo_outputs):
    import av

    from launch.demo_samples import REAL_VIDEO, REPO

    real = REPO / DemoConfig.real_dir / REAL_VIDEO
    names = ["dub_heldout"] + (["dub_real"] if real.is_file() else [])
    clip_level = ("dub_video", "dub_ground_truth", "dub_strip")  # step 9's dub of a shard clip
    assert [n for n in demo_outputs if n.startswith("dub_") and n not in clip_level] == names
    for name in names:
        with av.open(str(demo_outputs[name])) as container:
            assert len(container.streams.audio) == 1, name
            assert sum(1 for _ in container.decode(video=0)) == 12, name  # 0.48 s at 25 fps
    if real.is_file():  # the real recording keeps its 1080x1920 frames
        with av.open(str(demo_outputs["dub_real"])) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (1080, 1920)


@pytest.mark.slow
def test_a_refined_decoder_keeps_the_encoder_the_base_dit_learned_from(demo_outputs):
    from safetensors.torch import load_file

    base = demo_outputs["base_model"]
    assert base.name == "base_model_decoder2"
    fitted = load_file(base.parent / "parts" / "vae" / "diffusion_pytorch_model.safetensors")
    refined = load_file(base / "vae" / "diffusion_pytorch_model.safetensors")
    keep = [k for k in fitted if not k.startswith("decoder.")]  # encoder and latent statistics
    assert keep and all(np.array_equal(fitted[k].numpy(), refined[k].numpy()) for k in keep)
    assert any(not np.array_equal(fitted[k].numpy(), refined[k].numpy()) for k in fitted if k.startswith("decoder."))
    # The refinement also draws the adapter's people, so the decoder learns more mouths than the base saw.
    fit = json.loads((base / "vae" / "talkdit_fit.json").read_text())
    corpora = [demo_outputs["base_shards"], demo_outputs["shards"]]
    assert fit["config"]["shards"].split(",") == [f"{shards}/*.tar" for shards in corpora]
    base_fit = json.loads((base.parent / "parts" / "vae" / "talkdit_fit.json").read_text())
    assert fit["clips"]["train"] > base_fit["clips"]["train"]


@pytest.mark.slow
def test_the_tiny_base_never_saw_the_people_the_adapter_learns_from(demo_outputs):
    def people(shards: Path) -> set[int]:
        """The generator seeds of a corpus's people (its manifest)."""
        manifest = json.loads((shards.parents[1] / "corpus" / "manifest.json").read_text())
        return {v["seed"] for v in manifest["videos"]}

    adapter, base = people(demo_outputs["shards"]), people(demo_outputs["base_shards"])
    assert len(adapter) == len(base) == 2 and not adapter & base
    stage1 = read_training_checkpoint(demo_outputs["stage1_checkpoint"])["talkdit"]["config"]["data"]["shards"]
    # Stages train on the adapter people's shards with the base VAE's latents added, not on the base's.
    assert demo_outputs["shards"].parents[1].name in stage1 and demo_outputs["base_model"].parent.name in stage1


@pytest.mark.slow
def test_demo_shards_come_from_the_data_prep_pipeline(demo_outputs):
    rows = pq.read_table(demo_outputs["ledger"]).to_pylist()
    kept = {r["clip_id"]: r for r in rows if r["kind"] == "clip" and r["status"] == "kept"}
    assert len([r for r in rows if r["kind"] == "video"]) == 2  # the training people
    assert len(kept) >= 4  # two 3-s videos, 25-frame clips at 25 fps: up to 3 each
    shards = sorted(demo_outputs["shards"].glob("*.tar"))
    samples = [
        decode_sample(raw, FeatureSpec(layers=5, dim=32))
        for raw in wds.WebDataset(
            [str(s) for s in shards], shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False
        )
    ]
    assert sorted(s.key for s in samples) == sorted(kept)
    for s in samples:
        assert s.frames.shape == (25, 64, 64, 3) and s.fps == 25.0
        assert s.whisper.shape[0] == 50  # 1 s at 50 Hz
        assert s.ref_frames.shape[0] == 2
        # Identity references are the speaker outside the clip: they differ from every clip frame.
        for ref in s.ref_frames.astype(np.int16):
            assert min(np.abs(ref - f.astype(np.int16)).mean() for f in s.frames) > 0.5
        assert np.isfinite(s.lower_face_boxes).all()
        lower = s.lower_face_boxes
        assert np.all(lower[:, 2] > lower[:, 0]) and np.all(lower[:, 3] > lower[:, 1])


def run_benchmark(script: str, args: list[str]) -> dict:
    """Run ``benchmarks/<script>`` as a user would and return the JSON object it prints."""
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.slow
def test_lipsync_benchmark_scores_a_demo_checkpoint(demo_outputs, tmp_path):
    # The benchmark on the reduced demo's stage-2 checkpoint: held-out people framed like its corpus.
    args = ["--checkpoint", str(demo_outputs["stage2_checkpoint"]), "--out", str(tmp_path)]
    # 3-s videos give 3 clips each: 4 clips span two people, so each has another person's speech to dub.
    args += ["--clips", "4", "--videos", "3", "--steps", "1", "--zoom", "1.5", "--duration", "3"]
    summary = run_benchmark("lipsync_learning.py", args)
    arms = ("trained", "base", "source", "vae_ceiling")
    assert {f"mouth_mse_{a}" for a in arms} <= set(summary) and summary["clips"] >= 1
    for key in ("gap_closed", "openness_corr_trained", "openness_corr_base", "openness_measure_check"):
        assert key in summary
    assert summary["mouth_mse_source"] > 0 and summary["stage"] == "stage2_lora"
    # The latent-space check of audio use: the same held-out batches with their own and with another's speech.
    gain = summary["audio_loss_gain"]
    assert gain["clips"] >= 2 and gain["own"] > 0 and gain["other"] > 0
    assert gain["gain"] == pytest.approx(gain["other"] - gain["own"])
    # The same dubs by inversion editing: the source inverted with its own speech, edited with the other's.
    inverted = run_benchmark("lipsync_learning.py", [*args, "--invert-edit"])
    assert inverted["sampling"] == "invert_edit" and summary["sampling"] == "noise"
    assert inverted["mouth_mse_trained"] != summary["mouth_mse_trained"]
    assert inverted["mouth_mse_source"] == summary["mouth_mse_source"]  # the same cases


@pytest.mark.slow
def test_audio_probe_reads_the_demo_corpora(demo_outputs):
    # The probe that tells the audio side from the video side when the benchmark shows no sync.
    out_dir = demo_outputs["corpus"].parents[3]  # <out_dir>/data/corpora/<corpus>/corpus
    probe = run_benchmark("lipsync_audio_probe.py", ["--out", str(out_dir)])
    assert probe["frames"]["train"] > 0 and probe["frames"]["heldout"] > 0
    # The generator's audio envelope drives its mouth: energy and opening correlate on any corpus it makes.
    assert probe["energy_corr"]["heldout"] > 0.5
    # The features must carry what the audio says, not mostly the encoder's positional embeddings (a random
    # Whisper at transformers' init_std 0.02 gave 0.0002, and no adapter learned from it).
    assert probe["feature_content_share"] > 0.1


def test_demo_rejects_unknown_options(capsys):
    assert main(["num_vidoes=3"]) == 2
    assert "num_vidoes" in capsys.readouterr().err
    assert main(["vae_decoder_steps=-1"]) == 2
    assert "vae_decoder_steps" in capsys.readouterr().err
