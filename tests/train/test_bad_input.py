"""Bad input gets a clear error naming what is wrong, and leaves nothing half-written."""

import csv

import numpy as np
import pytest

from data_prep.media import encode_npy
from data_prep.samples import encode_sample
from data_prep.shard_writer import ShardWriter
from tests.train.conftest import tiny_overrides
from tests.train.shards import TINY_WHISPER, simple_clip
from trainer.data.schema import DataError, ShardSampleError
from trainer.model.whisper_features import WhisperFeatureExtractor
from trainer.run_dir import metrics_files
from trainer.train import main, run


@pytest.fixture(scope="module")
def good_samples():
    extractor = WhisperFeatureExtractor(TINY_WHISPER)
    return [encode_sample(simple_clip(s, 17, 64, 25.0, 2, extractor)) for s in range(3)]


def write(path, samples):
    with ShardWriter(path, samples_per_shard=10) as w:
        for s in samples:
            w.write(s)
    return f"{path}/*.tar"


def test_missing_member_is_named_and_no_run_dir(good_samples, tmp_path):
    bad = dict(good_samples[0])
    del bad["whisper.npy"]
    shards = write(tmp_path / "shards", [bad, *good_samples[1:]])
    with pytest.raises(ShardSampleError, match=r"shard-000000.tar, sample \w+: missing member 'whisper.npy'"):
        run(tiny_overrides(shards, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_wrong_shape_is_named_with_expected_and_found(good_samples, tmp_path):
    bad = dict(good_samples[0])
    bad["whisper.npy"] = encode_npy(np.zeros((35, 7, 32), dtype=np.float16))
    shards = write(tmp_path / "shards", [bad])
    with pytest.raises(ShardSampleError, match=r"'whisper.npy' has shape \[35, 7, 32\], expected \[\*, 5, 32\]"):
        run(tiny_overrides(shards, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_bad_samples_mid_stream_are_skipped_then_stop_the_run_past_the_limit(good_samples, tmp_path):
    bad = dict(good_samples[1])
    bad["lower_face_boxes.npy"] = encode_npy(np.zeros((16, 4), dtype=np.float32))
    shards = write(tmp_path / "shards", [good_samples[0], bad, good_samples[2]])
    limits = ["data.tokens_per_batch=12", "data.shuffle_buffer=1", "data.min_samples_before_skip_check=6"]
    # Under the limit: skipped, counted, logged; the run finishes.
    result = run(tiny_overrides(shards, tmp_path / "ok", 4, *limits, "data.max_skipped_fraction=0.5"))
    with open(metrics_files(result.run_dir)[-1]) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("data/skipped_samples")]
    assert rows and float(rows[-1]["data/skipped_samples"]) >= 1
    # Past the limit: a clear error naming the bad sample, and no partial checkpoint.
    with pytest.raises(DataError, match=r"samples were bad .*lower_face_boxes.npy' has shape \[16, 4\]"):
        run(tiny_overrides(shards, tmp_path / "run", 12, *limits, "data.max_skipped_fraction=0.1"))
    ckpts = tmp_path / "run" / "checkpoints"
    leftovers = [p for p in ckpts.rglob("*") if ".tmp" in p.name] if ckpts.exists() else []
    assert leftovers == []


def test_corrupt_video_is_named(good_samples, tmp_path):
    bad = dict(good_samples[0])
    bad["video.mp4"] = b"\x00" * 100
    shards = write(tmp_path / "shards", [bad])
    with pytest.raises(ShardSampleError, match=r"member 'video.mp4' does not decode as video"):
        run(tiny_overrides(shards, tmp_path / "run"))


def test_checkpoint_of_another_model_size_is_refused(simple_shards, stage1, tmp_path):
    result, _, _ = stage1
    overrides = tiny_overrides(
        simple_shards, tmp_path / "run", 4, f"resume={result.last_checkpoint}", "model.transformer.arch.num_layers=3"
    )
    with pytest.raises(ValueError, match=r"another configuration; differing keys: .*model.transformer.arch.num_layers"):
        run(overrides)
    assert not (tmp_path / "run").exists()


def test_stage1_adapter_of_another_size_is_refused(simple_shards, stage1, tmp_path):
    _, export_dir, _ = stage1
    overrides = tiny_overrides(
        simple_shards, tmp_path / "run", 1, "stage=stage2_lora", f"stage.adapter_init={export_dir}", "audio.window=5"
    )
    with pytest.raises(ValueError, match=r"built for another model: window: file 9 vs model 5"):
        run(overrides)
    assert not (tmp_path / "run").exists()


def test_cli_reports_unknown_key_and_exits_2(simple_shards, tmp_path, capsys):
    code = main(tiny_overrides(simple_shards, tmp_path / "run", 1, "model.transformer.arch.num_layer=3"))
    assert code == 2
    err = capsys.readouterr().err
    assert "'model.transformer.arch.num_layer'" in err
    assert "closest valid key is 'model.transformer.arch.num_layers'" in err
    assert not (tmp_path / "run").exists()


def test_existing_run_dir_with_checkpoints_is_not_overwritten(simple_shards, stage1):
    result, _, _ = stage1
    before = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        run(tiny_overrides(simple_shards, result.run_dir, 1))
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == before


def test_a_shard_that_is_not_a_tar_is_one_line_and_no_run_dir(tmp_path, capsys):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "shard-000000.tar").write_bytes(b"this is not a tar file\n" * 40)
    code = main(tiny_overrides(f"{tmp_path}/shards/*.tar", tmp_path / "run", 2))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "shard-000000.tar" in err and "not a readable tar file" in err
    assert not (tmp_path / "run").exists()


def test_a_corrupt_shard_among_good_ones_is_skipped_and_counted(good_samples, tmp_path):
    shards = tmp_path / "shards"
    write(shards, good_samples)
    (shards / "shard-000001.tar").write_bytes(b"\x00garbage" * 300)  # met after the good shard, every epoch
    result = run(tiny_overrides(f"{shards}/*.tar", tmp_path / "run", 4))
    assert result.last_checkpoint.exists()
    with open(metrics_files(result.run_dir)[-1]) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("data/skipped_samples")]
    assert rows and float(rows[-1]["data/skipped_samples"]) >= 1


def test_a_truncated_shard_keeps_the_samples_before_the_damage(good_samples, tmp_path):
    from trainer.data.buckets import Compression
    from trainer.data.datamodule import feature_spec, stream_settings
    from trainer.data.stream import TalkingHeadStream
    from trainer.train import load_train_config

    shards = tmp_path / "shards"
    write(shards, good_samples)
    tar = next(shards.glob("*.tar"))
    data = tar.read_bytes()
    tar.write_bytes(data[: int(len(data) * 0.8)])  # the last sample is cut off
    cfg = load_train_config(tiny_overrides(f"{shards}/*.tar", tmp_path / "run"))
    stream = TalkingHeadStream(
        [str(tar)], stream_settings(cfg.data, feature_spec(cfg), 2, Compression.of(cfg.model.vae))
    )
    counters = {"seen": 0, "skipped": 0, "first_skipped": None}
    first_epoch = []
    for epoch, raw in stream.raw_samples(0, 1, counters):
        if epoch > 0:
            break
        first_epoch.append(raw["__key__"])
    assert len(first_epoch) == 2 and counters["skipped"] == 1
    assert "not a readable tar file" in counters["first_skipped"]


def test_a_reader_whose_shards_are_all_unreadable_stops_with_one_error(tmp_path):
    from trainer.data.buckets import Compression
    from trainer.data.datamodule import feature_spec, stream_settings
    from trainer.data.stream import TalkingHeadStream
    from trainer.train import load_train_config

    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\x00garbage" * 300)
    cfg = load_train_config(tiny_overrides(str(bad), tmp_path / "run"))
    stream = TalkingHeadStream(
        [str(bad)], stream_settings(cfg.data, feature_spec(cfg), 2, Compression.of(cfg.model.vae))
    )
    with pytest.raises(DataError, match=r"no readable sample in the 1 shard\(s\) of reader 0 .*bad.tar"):
        next(iter(stream))
