"""Adding VAE latents to existing shards: every member kept, the posterior added, resumable, one-line errors."""

import numpy as np
import torch
import webdataset as wds

from data_prep.latents import LatentsConfig, add_latents, main
from tests.train.shards import write_simple_shards
from trainer.config.schema import VAEConfig
from trainer.data.buckets import Compression
from trainer.data.decode import decode_sample
from trainer.data.schema import LATENT_MEMBERS, FeatureSpec
from trainer.model.vae import encode_posterior, load_vae

TINY_VAE = VAEConfig(
    source="random",
    arch={
        "latent_channels": 8,
        "block_out_channels": [8, 8, 8, 8],
        "decoder_block_out_channels": [8, 8, 8, 8],
        "layers_per_block": [1, 1, 1, 1, 1],
        "decoder_layers_per_block": [1, 1, 1, 1, 1],
    },
)


def samples(pattern):
    urls = sorted(str(p) for p in pattern)
    return list(wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False))


def test_latents_are_added_to_a_copy_of_every_sample(tmp_path):
    write_simple_shards(tmp_path / "in", num_clips=3, per_shard=2)
    written = add_latents(LatentsConfig(shards=f"{tmp_path}/in/*.tar", output_dir=str(tmp_path / "out"), vae=TINY_VAE))
    assert [p.name for p in written] == sorted(p.name for p in (tmp_path / "in").glob("*.tar"))
    before, after = samples((tmp_path / "in").glob("*.tar")), samples((tmp_path / "out").glob("*.tar"))
    assert [s["__key__"] for s in before] == [s["__key__"] for s in after]
    vae = load_vae(TINY_VAE)
    for old, new in zip(before, after):
        assert all(new[k] == v for k, v in old.items() if not k.startswith("__"))  # nothing else changes
        assert set(LATENT_MEMBERS) <= set(new)
        clip = decode_sample(new, FeatureSpec(layers=5, dim=32), latents=Compression.of(TINY_VAE))
        mean, _ = encode_posterior(vae, torch.from_numpy(clip.frames)[None])
        assert np.allclose(clip.latents["latent_mean"], mean[0].numpy(), atol=2e-3)  # float16 storage
        assert clip.latents["ref_latent_mean"].shape[1] == clip.ref_frames.shape[0]
    assert all(p.with_suffix(".idx.json").is_file() for p in written)
    stamp = written[0].stat().st_mtime_ns
    add_latents(LatentsConfig(shards=f"{tmp_path}/in/*.tar", output_dir=str(tmp_path / "out"), vae=TINY_VAE))
    assert written[0].stat().st_mtime_ns == stamp  # a rerun skips finished shards


def test_bad_input_gets_one_line(tmp_path, capsys):
    assert main([f"shards={tmp_path}/none-*.tar", f"output_dir={tmp_path / 'o'}", "vae.source=random"]) == 2
    assert "none-*.tar" in capsys.readouterr().err
    assert main([f"shards={tmp_path}/x.tar", f"output_dir={tmp_path / 'o'}", f"vae.path={tmp_path}/nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
