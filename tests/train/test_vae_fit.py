"""Fitting an LTX-architecture VAE: the saved folder, the latent statistics, resuming, and bad input."""

import dataclasses
import json

import pytest
import torch
from diffusers import AutoencoderKLLTXVideo

from trainer import vae_fit
from trainer.vae_fit import FIT_REPORT, fit_vae, main
from trainer.vae_fit_config import VAEFitConfig

# A very small LTX VAE (same 32x32x8 compression) so that a few steps take a second.
SMALL = {
    "latent_channels": 8,
    "block_out_channels": [8, 8, 8, 8],
    "decoder_block_out_channels": [8, 8, 8, 8],
    "layers_per_block": [1, 1, 1, 1, 1],
    "decoder_layers_per_block": [1, 1, 1, 1, 1],
}


def config(shards, out, **kw):
    base = dict(
        shards=shards,
        output_dir=str(out),
        arch=SMALL,
        image_steps=3,
        clip_steps=3,
        image_batch=2,
        clip_batch=1,
        clip_frames=9,
        holdout_videos=1,
        checkpoint_every=2,
    )
    base.update(kw)
    return VAEFitConfig(**base)


def test_fit_writes_a_diffusers_vae_with_latent_statistics(simple_shards, tmp_path):
    out = fit_vae(config(simple_shards, tmp_path / "vae"), progress=False)
    vae = AutoencoderKLLTXVideo.from_pretrained(out)
    assert vae.spatial_compression_ratio == 32 and vae.temporal_compression_ratio == 8
    # The DiT reads normalised latents: the corpus' per-channel statistics are stored in the VAE.
    assert not torch.all(vae.latents_mean == 0) and not torch.all(vae.latents_std == 1)
    report = json.loads((out / FIT_REPORT).read_text())
    assert report["steps"] == 6 and report["clips"]["holdout"] == 1  # the clips of the first source video
    assert report["holdout_psnr_db"] is not None and report["holdout_psnr_db"] > 0
    assert not (tmp_path / "vae.fit").exists()  # the resumable state goes once the fit is done
    before = out.stat().st_mtime_ns
    assert fit_vae(config(simple_shards, tmp_path / "vae"), progress=False) == out  # reused, not refitted
    assert out.stat().st_mtime_ns == before
    # A folder fitted with other settings is never passed off as the one asked for.
    with pytest.raises(ValueError, match=r"holds a VAE fitted with other settings \(max_clips\)"):
        fit_vae(dataclasses.replace(config(simple_shards, tmp_path / "vae"), max_clips=3), progress=False)


def test_an_interrupted_fit_resumes_to_the_same_weights(simple_shards, tmp_path, monkeypatch):
    straight = AutoencoderKLLTXVideo.from_pretrained(fit_vae(config(simple_shards, tmp_path / "a"), progress=False))

    real_step = vae_fit.fit_step
    calls = {"n": 0}

    def crash_after_four(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(vae_fit, "fit_step", crash_after_four)
    with pytest.raises(KeyboardInterrupt):
        fit_vae(config(simple_shards, tmp_path / "b"), progress=False)
    assert (tmp_path / "b.fit" / "state.pt").is_file() and not (tmp_path / "b").exists()
    monkeypatch.setattr(vae_fit, "fit_step", real_step)
    resumed = AutoencoderKLLTXVideo.from_pretrained(fit_vae(config(simple_shards, tmp_path / "b"), progress=False))
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_bad_input_gets_one_line(simple_shards, tmp_path, capsys):
    assert main([f"shards={tmp_path}/missing-*.tar", f"output_dir={tmp_path / 'v'}"]) == 2
    assert "missing-*.tar" in capsys.readouterr().err
    assert main([f"shards={simple_shards}", f"output_dir={tmp_path / 'v'}", "clip_frames=10"]) == 2
    assert "clip_frames" in capsys.readouterr().err
    assert main([f"shards={simple_shards}", f"output_dir={tmp_path / 'v'}", "arch.latent_chanels=4"]) == 2
    assert "latent_chanels" in capsys.readouterr().err
    assert main([f"shards={simple_shards}", f"output_dir={tmp_path / 'v'}", "image_stepz=4"]) == 2
    assert "image_stepz" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_refining_the_decoder_keeps_the_latents_a_dit_was_trained_on(simple_shards, tmp_path, capsys):
    fitted = fit_vae(config(simple_shards, tmp_path / "vae"), progress=False)
    refine = config(
        simple_shards,
        tmp_path / "refined",
        init_from=str(fitted),
        image_steps=0,
        clip_steps=0,
        decoder_steps=3,
        decoder_batch=1,
        decoder_frames=9,
    )
    before = AutoencoderKLLTXVideo.from_pretrained(fitted)
    after = AutoencoderKLLTXVideo.from_pretrained(fit_vae(refine, progress=False))
    # The encoder and the latent normalisation are bit for bit the fitted VAE's: a DiT's latents stay valid.
    for name, tensor in before.encoder.state_dict().items():
        assert torch.equal(tensor, after.encoder.state_dict()[name]), name
    assert torch.equal(before.latents_mean, after.latents_mean) and torch.equal(before.latents_std, after.latents_std)
    moved = [n for n, t in before.decoder.state_dict().items() if not torch.equal(t, after.decoder.state_dict()[n])]
    assert moved  # the decoder trained
    report = json.loads((tmp_path / "refined" / FIT_REPORT).read_text())
    assert report["steps"] == 3 and report["config"]["init_from"] == str(fitted)

    assert main([f"shards={simple_shards}", f"output_dir={tmp_path / 'r2'}", f"init_from={tmp_path / 'none'}"]) == 2
    assert "init_from" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
