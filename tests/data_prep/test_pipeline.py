"""The pipeline on generated talking heads: ledger, shards, audio alignment, training on the result."""

import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import webdataset as wds

from data_prep.ledger import COLUMNS, KEPT
from data_prep.run import load_config, run
from tests.data_prep.conftest import prep_overrides
from trainer.data.decode import decode_sample
from trainer.data.schema import FeatureSpec


@pytest.fixture(scope="module")
def corpus_run(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep")
    summary = run(load_config(prep_overrides(small_corpus, out)))
    return out, summary


def ledger_rows(out):
    return pq.read_table(out / "ledger.parquet").to_pylist()


def shard_samples(out):
    urls = [str(p) for p in sorted((out / "shards").glob("*.tar"))]
    ds = wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
    return [decode_sample(raw, FeatureSpec(layers=5, dim=32)) for raw in ds]


@pytest.mark.slow
def test_every_candidate_has_a_row_and_kept_clips_are_in_shards(corpus_run):
    out, summary = corpus_run
    rows = ledger_rows(out)
    assert set(rows[0]) == set(COLUMNS)
    videos = [r for r in rows if r["kind"] == "video"]
    clips = [r for r in rows if r["kind"] == "clip"]
    assert len(videos) == 4 and all(v["status"] == KEPT for v in videos)
    assert len(clips) == 4  # one 121-frame clip in each 5.2 s video
    assert all(c["status"] == KEPT and c["shard"] for c in clips)
    assert all(v["face_fraction"] >= 0.95 for v in videos)
    assert {tuple(r["stages_ran"]) for r in clips} == {("probe", "decode", "scenes", "faces", "features")}
    samples = shard_samples(out)
    assert sorted(s.key for s in samples) == sorted(c["clip_id"] for c in clips)
    for s in samples:
        assert s.frames.shape[0] == 121 and s.fps == 25.0
        assert s.ref_frames.shape[0] == 6
        assert np.isfinite(s.lower_face_boxes).all()
    idx = json.loads(next((out / "shards").glob("*.idx.json")).read_text())
    assert idx["samples"] and all("video.mp4" in e["members"] for e in idx["samples"])
    assert (out / "report.md").read_text().startswith("# Data preparation report")
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_clip_audio_is_the_source_audio_of_the_span(corpus_run, small_corpus):
    out, _ = corpus_run
    rows = {r["clip_id"]: r for r in ledger_rows(out) if r["kind"] == "clip"}
    for s in shard_samples(out):
        row = rows[s.key]
        source = small_corpus / (row["source"].split("/")[-1].rsplit(".", 1)[0] + ".wav")
        wav, sr = sf.read(source, dtype="float32")
        clip_audio, csr = sf.read(io.BytesIO(_member(out, s.key, "audio.wav")), dtype="float32")
        assert csr == 16000 and clip_audio.shape[0] == round(121 / 25 * 16000)
        a0 = round(row["start_s"] * 16000)
        ref = wav[a0 : a0 + clip_audio.shape[0]]
        # The corpus mp4 carries AAC; the wav is the lossless original. They must line up at lag 0.
        lags = range(-40, 41, 4)
        corr = [np.corrcoef(clip_audio[100:-100], np.roll(ref, lag)[100:-100])[0, 1] for lag in lags]
        assert max(corr) > 0.9 and abs(list(lags)[int(np.argmax(corr))]) <= 4


def _member(out, key, member):
    for tar_path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                if m.name == f"{key}.{member}":
                    return tar.extractfile(m).read()
    raise KeyError(key)


@pytest.mark.slow
def test_the_shards_train(corpus_run, tmp_path):
    from trainer.checkpoints import read_training_checkpoint
    from trainer.train import run as train_run

    out, _ = corpus_run
    result = train_run(
        [
            "experiment=smoke",
            f"data.shards={out}/shards/*.tar",
            "data.max_frames=121",
            "data.tokens_per_batch=576",  # one 121-frame clip at 192x192: 16 latent frames x 6x6 tokens
            "data.min_megapixels=0.036864",
            "data.max_megapixels=0.036864",
            "data.num_workers=0",
            "objective.num_reference_frames=6",
            "loop.max_steps=2",
            "loop.progress_bar=false",
            f"run_dir={tmp_path}/run",
        ]
    )
    assert read_training_checkpoint(result.last_checkpoint)["global_step"] == 2


@pytest.mark.slow
def test_rerun_skips_finished_units(corpus_run, small_corpus):
    out, first = corpus_run
    assert first["processed_units"] == [0, 1]
    again = run(load_config(prep_overrides(small_corpus, out)))
    assert again["processed_units"] == [] and again["skipped_units"] == 2
