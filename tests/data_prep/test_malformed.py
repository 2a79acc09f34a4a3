"""Malformed and unusual media: every file gets a ledger row with a specific reason, the run finishes,
and no shard is partial."""

import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_prep.run import load_config, run
from tests.data_prep.conftest import prep_overrides
from tests.data_prep.media_corpus import build


@pytest.mark.slow
def test_malformed_corpus(tmp_path):
    expected = build(tmp_path / "media")
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in (tmp_path / "media").iterdir()}
    summary = run(load_config(prep_overrides(tmp_path / "media", out, "faces.min_face_px=64")))
    assert summary["ledger"] is not None  # the run finished and merged
    rows = [r for r in pq.read_table(out / "ledger.parquet").to_pylist() if r["kind"] == "video"]
    got = {Path(r["source"]).name: (r["status"], r["reason"]) for r in rows}
    assert set(got) == set(expected)
    for name, outcome in expected.items():
        status, reason = got[name]
        if outcome == "kept":
            assert status == "kept", (name, reason)
        else:
            assert (status, reason) == ("rejected", outcome), name
    # Raw inputs are never modified.
    assert {p.name: p.read_bytes() for p in (tmp_path / "media").iterdir()} == before
    # Shards are complete tar files with their index; no temporary file is left.
    shards = sorted((out / "shards").iterdir())
    assert not [p for p in shards if p.name.startswith(".") or ".tmp" in p.name]
    for tar_path in [p for p in shards if p.suffix == ".tar"]:
        with tarfile.open(tar_path) as tar:
            names = tar.getnames()
        assert names and all(n.split(".", 1)[1] for n in names)
        assert tar_path.with_suffix(".idx.json").is_file()
    kept = [
        r for r in pq.read_table(out / "ledger.parquet").to_pylist() if r["kind"] == "clip" and r["status"] == "kept"
    ]
    assert len(kept) == sum(1 for o in expected.values() if o == "kept")
