"""Loading the DiT and VAE: diffusers folder, LTX single file, explicit random; clear errors otherwise."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from tests.model.helpers import TINY_ARCH, tiny_transformer
from trainer.config.schema import TransformerConfig, VAEConfig
from trainer.model.backbone import load_transformer
from trainer.model.vae import load_vae

TINY_VAE = dict(
    latent_channels=8,
    block_out_channels=[8, 8, 8, 8],
    decoder_block_out_channels=[8, 8, 8, 8],
    layers_per_block=[1, 1, 1, 1, 1],
    decoder_layers_per_block=[1, 1, 1, 1, 1],
)


def to_ltx_original_keys(state):
    """Inverse of diffusers' LTX single-file key conversion: the layout of Lightricks' .safetensors."""
    out = {}
    for k, v in state.items():
        k2 = k.replace("proj_in", "patchify_proj").replace("time_embed", "adaln_single")
        k2 = k2.replace("norm_q", "q_norm").replace("norm_k", "k_norm")
        out["model.diffusion_model." + k2] = v.contiguous()
    return out


def forward(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 12, TINY_ARCH.in_channels, generator=g)
    text = torch.randn(1, 3, TINY_ARCH.caption_channels, generator=g)
    with torch.no_grad():
        return model(
            x,
            text,
            torch.full((1,), 500.0),
            torch.ones(1, 3),
            num_frames=2,
            height=2,
            width=3,
            rope_interpolation_scale=(1.0, 1.0, 1.0),
            return_dict=False,
        )[0]


def test_random_source_is_seeded_and_frozen():
    a = load_transformer(TransformerConfig(source="random", arch=TINY_ARCH, init_seed=3))
    b = load_transformer(TransformerConfig(source="random", arch=TINY_ARCH, init_seed=3))
    assert torch.equal(forward(a), forward(b))
    assert not any(p.requires_grad for p in a.parameters())


def test_diffusers_folder_round_trip(tmp_path):
    ref = tiny_transformer(1)
    ref.save_pretrained(tmp_path / "transformer")
    model = load_transformer(TransformerConfig(source="diffusers", path=str(tmp_path), arch=TINY_ARCH))
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    # Same tensors; diffusers' loader may lay them out differently in memory (last-ulp matmul changes).
    torch.testing.assert_close(forward(model), forward(ref), rtol=0, atol=1e-6)


def test_diffusers_folder_of_another_size_is_refused(tmp_path):
    tiny_transformer(1).save_pretrained(tmp_path / "transformer")
    bigger = replace(TINY_ARCH, num_layers=3)
    with pytest.raises(ValueError, match=r"num_layers: file has 2, config expects 3"):
        load_transformer(TransformerConfig(source="diffusers", path=str(tmp_path), arch=bigger))


def test_missing_folder_and_weights_name_the_file_and_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"LTX-Video-0.9.7"):
        load_transformer(TransformerConfig(source="diffusers", path=str(tmp_path / "nope"), arch=TINY_ARCH))
    (tmp_path / "transformer").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config.json"):
        load_transformer(TransformerConfig(source="diffusers", path=str(tmp_path), arch=TINY_ARCH))
    with pytest.raises(FileNotFoundError, match=r"ltxv.safetensors.*Lightricks"):
        load_transformer(
            TransformerConfig(source="single_file", path=str(tmp_path / "ltxv.safetensors"), arch=TINY_ARCH)
        )


def test_single_file_checkpoint_in_ltx_layout_loads_key_for_key(tmp_path):
    ref = tiny_transformer(2)
    path = tmp_path / "ltxv-tiny.safetensors"
    state = to_ltx_original_keys(ref.state_dict())
    state["vae.encoder.conv_in.conv.weight"] = torch.zeros(1)  # single files carry the VAE too
    save_file(state, str(path))
    model = load_transformer(TransformerConfig(source="single_file", path=str(path), arch=TINY_ARCH))
    assert torch.equal(forward(model), forward(ref))


def test_single_file_of_another_model_size_is_refused(tmp_path):
    wide = tiny_transformer(0)
    from diffusers import LTXVideoTransformer3DModel

    wide = LTXVideoTransformer3DModel(**{**TINY_ARCH.__dict__, "attention_head_dim": 8})
    path = tmp_path / "other.safetensors"
    save_file(to_ltx_original_keys(wide.state_dict()), str(path))
    with pytest.raises(ValueError, match=r"other.safetensors does not match .*shape mismatches"):
        load_transformer(TransformerConfig(source="single_file", path=str(path), arch=TINY_ARCH))


def test_single_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"broken.safetensors is not a readable safetensors file"):
        load_transformer(TransformerConfig(source="single_file", path=str(path), arch=TINY_ARCH))


def test_vae_random_and_folder(tmp_path):
    vae = load_vae(VAEConfig(source="random", arch=TINY_VAE))
    assert vae.spatial_compression_ratio == 32 and vae.temporal_compression_ratio == 8
    vae.save_pretrained(tmp_path / "vae")
    again = load_vae(VAEConfig(source="diffusers", path=str(tmp_path)))
    x = torch.randn(1, 3, 9, 64, 64)
    with torch.no_grad():
        assert torch.equal(vae.encode(x).latent_dist.mean, again.encode(x).latent_dist.mean)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vae(VAEConfig(source="diffusers", path=str(tmp_path / "missing")))
