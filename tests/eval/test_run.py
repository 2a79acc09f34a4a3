"""``python -m eval.run``: samples muxed with their audio and the paper's tables from a trained checkpoint."""

import csv

import av
import pytest

from eval.metrics import MetricWeights
from eval.run import EvalConfig, main, run_eval
from eval.sampler.config import SamplerConfig
from tests.train.conftest import tiny_overrides
from trainer.train import run


@pytest.fixture(scope="module")
def trained(eval_shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_run")
    return run(tiny_overrides(eval_shards, root / "run", 2)).last_checkpoint


@pytest.mark.slow
def test_eval_writes_samples_and_tables(trained, eval_shards, tmp_path):
    cfg = EvalConfig(
        checkpoint=str(trained),
        shards=eval_shards,
        output_dir=str(tmp_path / "eval"),
        modes=["v2v_self", "v2v_novel", "v2v_invert", "i2v"],
        max_clips=2,
        sampler=SamplerConfig(num_steps=2),
    )
    written = run_eval(cfg, MetricWeights())
    for mode in ("v2v_self", "v2v_novel", "v2v_invert", "i2v"):
        samples = sorted((tmp_path / "eval" / "samples" / mode).glob("*.mp4"))
        assert len(samples) == 2, mode
        with av.open(str(samples[0])) as container:
            assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
            assert sum(1 for _ in container.decode(video=0)) == 17
    table2 = written["table2"].read_text()
    assert "V2V self-reenactment" in table2 and "V2V with novel audio" in table2 and "psnr" in table2
    assert "inversion editing (RASA)" in table2
    assert "I2V" in written["table3"].read_text()
    with open(written["metrics"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and all(float(r["psnr"]) > 0 for r in rows)
    skipped = written["skipped"].read_text()
    for name in ("fid", "fvd", "sync_c", "csim", "lpips"):  # no weight files here: skipped with the reason
        assert f"`{name}`" in skipped
    # Every table says which sync protocol produced it.
    assert "Sync-C / Sync-D / AV offset: direct protocol" in table2
    with open(tmp_path / "eval" / "table2.csv") as fh:
        assert {r["sync_protocol"] for r in csv.DictReader(fh)} == {"direct"}


@pytest.mark.slow
def test_official_sync_protocol_is_named_in_the_tables(trained, eval_shards, tmp_path):
    import torch

    from data_prep.models.syncnet import SyncNet

    torch.manual_seed(0)
    syncnet = tmp_path / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), syncnet)
    cfg = EvalConfig(
        checkpoint=str(trained),
        shards=eval_shards,
        output_dir=str(tmp_path / "eval"),
        modes=["i2v"],
        max_clips=1,
        sync_protocol="official",
        sampler=SamplerConfig(num_steps=1),
    )
    written = run_eval(cfg, MetricWeights(syncnet=syncnet))
    # No sfd_face.pth: MediaPipe stands in for S3FD, and the table says so.
    assert "MediaPipe face detection instead of S3FD" in written["table3"].read_text()
    with open(tmp_path / "eval" / "table3.csv") as fh:
        assert [r["sync_protocol"] for r in csv.DictReader(fh)] == ["official-mediapipe"]
    # A 17-frame sample is far below the official pipeline's 100-frame face tracks: skipped, with the reason.
    assert "no face track of more than 100 frames" in written["skipped"].read_text()


def test_bad_options_are_refused(tmp_path, capsys):
    assert main(["checkpoint=/nonexistent.ckpt", "shards=x"]) == 2
    assert "/nonexistent.ckpt" in capsys.readouterr().err
    ckpt = tmp_path / "c.ckpt"
    ckpt.write_bytes(b"")
    assert main([f"checkpoint={ckpt}", "shards=x", "modes=[v2v,i2v]"]) == 2
    assert "modes" in capsys.readouterr().err
    assert main([f"checkpoint={ckpt}", "shards=x", "v2v_mask=mouth"]) == 2
    assert "v2v_mask" in capsys.readouterr().err
    assert main([f"checkpoint={ckpt}", "shards=x", "sync_protocol=paper"]) == 2
    assert "'sync_protocol' = 'paper': expected direct or official" in capsys.readouterr().err
    assert main([f"checkpoint={ckpt}", "shards=x", "sampler.inversion.temporal_steps=2"]) == 2
    assert "'sampler.inversion.temporal_steps' = 2.0: expected a share" in capsys.readouterr().err
    assert main([f"checkpoint={ckpt}", "shards=x", "modes=[v2v_invert]", "sampler.teacache_threshold=0.03"]) == 2
    assert "'sampler.teacache_threshold' = 0.03: expected 0 with the v2v_invert row" in capsys.readouterr().err


@pytest.mark.slow
def test_an_edited_clip_samples_at_its_new_length(trained, eval_shards):
    from eval.clips import clip_batch, read_clips, sample_edited_clip
    from eval.sampler.edit_plan import Edit
    from eval.sampler.sampler import EulerSampler
    from trainer.stage_model import load_trained_model

    model, cfg = load_trained_model(trained)
    clip, audio, sr = read_clips(eval_shards, cfg, 1)[0]
    sampler = EulerSampler(model.dit, SamplerConfig(num_steps=2))
    batch = clip_batch(clip, cfg.objective.num_reference_frames)
    edit = Edit("add", start_s=8 / clip.fps, duration_s=8 / clip.fps)  # one latent frame after latent frame 0
    frames, drive = sample_edited_clip(model, cfg, sampler, batch, [edit], audio, sr, seed=0)
    assert frames.shape == (clip.frames.shape[0] + 8, *clip.frames.shape[1:])
    assert drive.shape[0] == int(frames.shape[0] * sr / clip.fps)
    # The inserted frames are silent in the driving audio; the kept ones carry the source's samples.
    per_frame = sr / clip.fps
    assert not drive[int(per_frame) : int(9 * per_frame)].any()  # frames 1-8: the new latent frame 1
    assert (drive[: int(per_frame)] == audio[: int(per_frame)]).all()
    assert (
        drive[int(9 * per_frame) :] == audio[int(per_frame) : int(per_frame) + len(drive) - int(9 * per_frame)]
    ).all()


@pytest.mark.slow
def test_clips_of_any_size_are_sampled_in_range_and_compared_at_their_own_size(trained, tmp_path):
    from tests.train.shards import write_simple_shards

    # 58x74 clips, as data_prep writes them from odd sources: no side a multiple of 32.
    write_simple_shards(tmp_path / "shards", num_clips=2, per_shard=2, size=58, widths=[74])
    cfg = EvalConfig(
        checkpoint=str(trained),
        shards=f"{tmp_path}/shards/*.tar",
        output_dir=str(tmp_path / "eval"),
        modes=["v2v_self"],
        max_clips=2,
        sampler=SamplerConfig(num_steps=2),
    )
    written = run_eval(cfg, MetricWeights())
    with open(written["metrics"]) as fh:
        rows = list(csv.DictReader(fh))
    # The tiny checkpoint trained at 64x64: that is the size in range; metrics compare at the clip's 74x58.
    assert [(r["sample_size"], r["source_size"]) for r in rows] == [("64x64", "74x58")] * 2
    assert all(float(r["psnr"]) > 0 and float(r["ssim"]) > 0 for r in rows)
    sample = next((tmp_path / "eval" / "samples" / "v2v_self").glob("*.mp4"))
    with av.open(str(sample)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (74, 58)
    assert "resized back to the source size" in written["table2"].read_text()


def test_tables_have_every_metric_column_even_when_a_metric_is_skipped(tmp_path):
    from eval.metrics import METRIC_NAMES
    from eval.tables import write_tables

    rows = [{"mode": "v2v_self", "clip": "a", **dict.fromkeys(METRIC_NAMES), "psnr": 20.0}]
    written = write_tables(tmp_path, rows)
    header, rule, row = written["table2"].read_text().splitlines()[:3]
    assert header == "| setting | clips | " + " | ".join(METRIC_NAMES) + " |"
    assert rule.count("---") == len(METRIC_NAMES) + 2
    assert row.count("|") == header.count("|") and "| 20 |" in row and "–" in row
    with open(tmp_path / "table2.csv") as fh:
        assert next(csv.reader(fh)) == ["setting", "clips", *METRIC_NAMES, "sync_protocol"]


def test_tables_report_set_level_fid_and_metrics_csv_each_clips(tmp_path):
    from eval.metrics import METRIC_NAMES
    from eval.tables import write_tables

    rows = [
        {"mode": "v2v_self", "clip": c, **dict.fromkeys(METRIC_NAMES), "fid": v} for c, v in (("a", 10.0), ("b", 30.0))
    ]
    write_tables(tmp_path, rows, set_level={"v2v_self": {"fid": 12.5}})
    with open(tmp_path / "table2.csv") as fh:
        table = list(csv.DictReader(fh))
    assert float(table[0]["fid"]) == 12.5 and table[0]["fvd"] == ""  # not the clips' mean (20)
    with open(tmp_path / "metrics.csv") as fh:
        assert [float(r["fid"]) for r in csv.DictReader(fh)] == [10.0, 30.0]


def test_missing_shards_are_named_before_any_model_is_loaded(tmp_path, capsys):
    ckpt = tmp_path / "c.ckpt"
    ckpt.write_bytes(b"not a checkpoint: never read, the shards fail first")
    out = tmp_path / "eval"
    assert main([f"checkpoint={ckpt}", f"shards={tmp_path}/none/*.tar", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: shards: no shard file matches") and "data.shards" not in err
    assert err.count("\n") == 1 and not out.exists()


def test_an_unreadable_shard_is_one_line_and_nothing_is_written(trained, tmp_path, capsys):
    (tmp_path / "broken.tar").write_bytes(b"\x00garbage" * 300)
    out = tmp_path / "eval"
    assert main([f"checkpoint={trained}", f"shards={tmp_path}/broken.tar", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "broken.tar: not a readable tar file" in err and err.count("\n") == 1
    assert not out.exists()
