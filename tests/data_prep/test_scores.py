"""SyncNet and HyperIQA stages in the pipeline: scores in the ledger, re-deciding without recomputing,
offset correction, missing weights, stages switched off."""

import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_prep import run as run_module
from data_prep.models import hyperiqa_scoring, syncnet_scoring
from data_prep.report import main as report_main
from data_prep.run import load_config, run
from data_prep.synthetic.corpus import generate_corpus
from tests.data_prep.conftest import prep_overrides


def syncnet_on(syncnet_file) -> list[str]:
    """SyncNet scoring every clip and rejecting none (the scores are what the tests read)."""
    return [
        "sync.enabled=true",
        f"sync.model_path={syncnet_file}",
        "sync.min_confidence=-1000",
        "sync.max_offset_ms=1000",
    ]


def scored_overrides(corpus, out, syncnet_file, hyperiqa_file, *extra):
    return prep_overrides(
        corpus,
        out,
        *syncnet_on(syncnet_file),
        "quality.enabled=true",
        f"quality.model_path={hyperiqa_file}",
        "quality.min_score=-1000",
        "quality.num_frames=2",
        "quality.crops_per_frame=2",
        *extra,
    )


@pytest.fixture(scope="module")
def scored(small_corpus, syncnet_file, hyperiqa_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored")
    run(load_config(scored_overrides(small_corpus, out, syncnet_file, hyperiqa_file)))
    return out


def clip_rows(path):
    return [r for r in pq.read_table(path).to_pylist() if r["kind"] == "clip"]


@pytest.mark.slow
def test_scores_and_fingerprints_are_in_the_ledger(scored):
    rows = clip_rows(scored / "ledger.parquet")
    assert rows and all(r["status"] == "kept" for r in rows)
    for r in rows:
        assert r["stages_ran"] == ["probe", "decode", "scenes", "faces", "sync", "quality", "features"]
        assert np.isfinite([r["sync_confidence"], r["sync_min_dist"], r["quality_score"]]).all()
        assert -15 <= r["sync_offset_frames"] <= 15
        fp = json.loads(r["model_fingerprints"])
        assert {"syncnet", "hyperiqa", "whisper"} <= set(fp)
        assert json.loads(r["thresholds"])["sync"]["min_confidence"] == -1000


@pytest.mark.slow
def test_report_redecides_stored_scores_without_models(scored, monkeypatch, capsys):
    monkeypatch.setattr(syncnet_scoring, "score_clip", lambda *a, **k: pytest.fail("SyncNet recomputed"))
    monkeypatch.setattr(hyperiqa_scoring, "score_frames", lambda *a, **k: pytest.fail("HyperIQA recomputed"))
    rows = clip_rows(scored / "ledger.parquet")
    cut = float(np.median([r["sync_confidence"] for r in rows]))
    assert report_main([f"output_dir={scored}", f"sync.min_confidence={cut}"]) == 0
    redecided = clip_rows(scored / "ledger_redecided.parquet")
    for old, new in zip(rows, redecided):
        assert new["sync_confidence"] == old["sync_confidence"]
        if old["sync_confidence"] < cut:
            assert (new["status"], new["reason"]) == ("rejected", "sync_low_confidence")
        else:
            assert new["status"] == "kept"
    assert "sync_low_confidence" in (scored / "report.md").read_text()


@pytest.mark.slow
def test_rerun_with_new_thresholds_reuses_the_scores(scored, small_corpus, syncnet_file, hyperiqa_file, monkeypatch):
    calls = {"sync": 0, "quality": 0}
    real_sync, real_quality = syncnet_scoring.score_clip, hyperiqa_scoring.score_frames

    def count_sync(*a, **k):
        calls["sync"] += 1
        return real_sync(*a, **k)

    def count_quality(*a, **k):
        calls["quality"] += 1
        return real_quality(*a, **k)

    monkeypatch.setattr(syncnet_scoring, "score_clip", count_sync)
    monkeypatch.setattr(hyperiqa_scoring, "score_frames", count_quality)
    before = clip_rows(scored / "ledger.parquet")
    cut = float(np.median([r["quality_score"] for r in before]))
    run(load_config(scored_overrides(small_corpus, scored, syncnet_file, hyperiqa_file, f"quality.min_score={cut}")))
    assert calls == {"sync": 0, "quality": 0}
    after = clip_rows(scored / "ledger.parquet")
    assert {r["clip_id"] for r in after} == {r["clip_id"] for r in before}
    for r in after:
        expect = "kept" if r["quality_score"] >= cut else "rejected"
        assert r["status"] == expect and (expect == "kept" or r["reason"] == "low_quality")


@pytest.mark.slow
def test_offset_correction_rechecks_with_shifted_audio(small_corpus, syncnet_file, tmp_path, monkeypatch):
    seen = []

    def fake_score(model, frames, audio, **kw):
        seen.append(audio.copy())
        # First check: 2 frames off; after the shift: in sync.
        off = 2 if len(seen) % 2 == 1 else 0
        return syncnet_scoring.SyncScores(
            offset_frames=off,
            offset_ms=off * 40.0,
            confidence=5.0 if off == 0 else 2.0,
            min_dist=7.0,
            mean_dists=np.zeros(31),
            num_windows=10,
        )

    monkeypatch.setattr(syncnet_scoring, "score_clip", fake_score)
    out = tmp_path / "out"
    overrides = prep_overrides(
        small_corpus,
        out,
        "sync.enabled=true",
        f"sync.model_path={syncnet_file}",
        "sync.correct_offset=true",
        "sync.min_confidence=3",
        "sync.max_offset_ms=40",
    )
    run(load_config(overrides))
    rows = clip_rows(out / "ledger.parquet")
    assert rows and all(r["status"] == "kept" for r in rows)
    assert all(r["sync_offset_frames"] == 2 and r["sync_offset_frames_corrected"] == 0 for r in rows)
    # The re-check read the source audio 2 frames (80 ms) earlier than the clip's own span.
    first, shifted = seen[0], seen[1]
    assert np.allclose(shifted[1280:], first[:-1280])


def test_missing_weights_name_the_file_and_source(small_corpus, tmp_path, capsys):
    code = run_module.main(
        prep_overrides(small_corpus, tmp_path / "o", "sync.enabled=true", f"sync.model_path={tmp_path}/none.model")
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "none.model" in err and "robots.ox.ac.uk" in err and "sync.enabled=false" in err
    code = run_module.main(prep_overrides(small_corpus, tmp_path / "o", "quality.enabled=true"))
    assert code == 2 and "hyperIQA" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_whisper_and_vae_weights_are_named(small_corpus, tmp_path, capsys):
    code = run_module.main(
        [*prep_overrides(small_corpus, tmp_path / "o"), "audio=whisper_small", f"audio.encoder.path={tmp_path}/whisper"]
    )
    assert code == 2 and "openai/whisper-small" in capsys.readouterr().err
    code = run_module.main(
        [*prep_overrides(small_corpus, tmp_path / "o"), "features.vae_latents=true", "features.vae.source=diffusers"]
    )
    assert code == 2 and "LTX-Video-0.9.7" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def mixed_corpus(small_corpus, tmp_path_factory):
    """The 25 fps corpus beside a 30 fps person."""
    mixed = tmp_path_factory.mktemp("mixed")
    for f in small_corpus.glob("*.mp4"):
        (mixed / f.name).symlink_to(f)
    generate_corpus(mixed, 1, seed=11, fps_choices=(30.0,), duration_s=5.2, width=192, height=192)
    return mixed


def scored_by_syncnet(corpus, syncnet_file, out, *extra):
    """Run with SyncNet on 49-frame clips; returns the kept clip rows and what each SyncNet call received:
    ``(frames, distinct frames, audio samples, fps)``."""
    seen = []
    real = syncnet_scoring.score_clip

    def spy(model, frames, audio, **kw):
        seen.append((frames.shape[0], len({f.tobytes() for f in frames}), audio.shape[0], kw["fps"]))
        return real(model, frames, audio, **kw)

    overrides = prep_overrides(
        corpus, out, *syncnet_on(syncnet_file), "clips.num_frames=49", "clips.stride_frames=49", *extra
    )
    cfg = load_config(overrides)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(syncnet_scoring, "score_clip", spy)
        run(cfg)
    rows = [r for r in clip_rows(out / "ledger.parquet") if r["status"] == "kept"]
    assert len(seen) == len(rows) and all(fps == 25.0 for *_, fps in seen)
    return cfg, rows, seen


@pytest.mark.slow
def test_clips_keep_their_source_rate_while_syncnet_scores_a_25_fps_view(mixed_corpus, syncnet_file, tmp_path):
    # The paper config (filters=edityourself) keeps each source's rate; SyncNet still reads 25 fps.
    out = tmp_path / "out"
    cfg, rows, seen = scored_by_syncnet(mixed_corpus, syncnet_file, out)
    assert cfg.clips.fps is None
    assert {r["fps"] for r in rows} == {25.0, 30.0}  # the corpus's two rates, kept
    assert all(r["end_s"] - r["start_s"] == pytest.approx(49 / r["fps"]) for r in rows)
    # A 49-frame clip at 30 fps spans 1.63 s: 41 frames at 25 fps (ticks up to half a frame past its end), with
    # the clip's own audio.
    assert {(n, samples) for n, _, samples, _ in seen} == {(49, 31360), (41, round(49 / 30 * 16000))}
    shard_fps = set()
    for shard in sorted(out.glob("shards/*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    shard_fps.add(json.load(tar.extractfile(member))["fps"])
    assert shard_fps == {25.0, 30.0}


@pytest.mark.slow
def test_clips_resampled_to_25_fps_are_scored_on_their_own_frames(mixed_corpus, syncnet_file, tmp_path):
    # A 30 fps source cut at clips.fps=25: SyncNet reads the clip's 49 frames, each once (not a view re-derived
    # from the source's uneven timestamps, which repeats frames).
    _, rows, seen = scored_by_syncnet(mixed_corpus, syncnet_file, tmp_path / "out", "clips.fps=25")
    assert {r["fps"] for r in rows} == {25.0} and len(rows) > len(list(mixed_corpus.glob("*.mp4")))
    assert all(n == distinct == 49 for n, distinct, _, _ in seen), seen
