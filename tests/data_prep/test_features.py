"""Per-clip features: sidecar captions, a pluggable captioner, cached VAE latents."""

import io
import json
import shutil
import tarfile

import numpy as np
import pytest

from data_prep.run import load_config, run
from tests.data_prep.conftest import prep_overrides
from trainer.config.errors import ConfigError

TINY_VAE = [
    "+features.vae.arch.latent_channels=8",
    "+features.vae.arch.block_out_channels=[8,8,8,8]",
    "+features.vae.arch.decoder_block_out_channels=[8,8,8,8]",
    "+features.vae.arch.layers_per_block=[1,1,1,1,1]",
    "+features.vae.arch.decoder_layers_per_block=[1,1,1,1,1]",
]


def members(out):
    found = {}
    for tar_path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                key, name = m.name.split(".", 1)
                found.setdefault(key, {})[name] = tar.extractfile(m).read()
    return found


@pytest.mark.slow
def test_captions_and_cached_latents(small_corpus, tmp_path):
    videos = sorted(small_corpus.glob("*.mp4"))[:2]
    src = tmp_path / "videos"
    src.mkdir()
    for v in videos:
        shutil.copy(v, src / v.name)
    (src / f"{videos[0].stem}.txt").write_text("a woman reads the news\n")
    out = tmp_path / "out"
    run(
        load_config(
            prep_overrides(
                src,
                out,
                "features.captioner=tests.data_prep.captioners:brightness_caption",
                "features.vae_latents=true",
                "features.vae.source=random",
                *TINY_VAE,
            )
        )
    )
    samples = members(out)
    assert len(samples) == 2
    captions = sorted(json.loads(s["json"])["caption"] for s in samples.values())
    assert captions[1] == "a woman reads the news"  # the sidecar wins
    assert captions[0].startswith("a person talking, brightness ")  # the captioner for the other
    for s in samples.values():
        mean = np.load(io.BytesIO(s["latent_mean.npy"]))
        assert mean.shape == (8, 16, 6, 6)  # 121 frames -> 16 latent frames; 192 px -> 6 tokens
        assert np.load(io.BytesIO(s["ref_latent_logvar.npy"])).shape == (8, 6, 6, 6)


def test_bad_captioner_fails_before_work(small_corpus, tmp_path):
    with pytest.raises(ConfigError, match="features.captioner"):
        run(load_config(prep_overrides(small_corpus, tmp_path / "o", "features.captioner=no_such_module:fn")))
    assert not (tmp_path / "o" / "shards").exists()
