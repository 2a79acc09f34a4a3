"""The audio adapter: zero-init identity, Eq. 6 gating, frame locality, pooling init, state-dict checks."""

import pytest
import torch

from tests.model.helpers import TINY_ARCH, tiny_adapter_config, tiny_transformer
from trainer.model.audio_adapter import (
    AudioProjection,
    audio_adapter_state_dict,
    load_audio_adapter_state_dict,
)
from trainer.model.audio_windows import sample_audio_windows
from trainer.model.dit import TIMESTEP_SCALE, AudioInputs, TalkingHeadDiT
from trainer.model.sequence import video_coords, video_token_grid

T, H, W = 3, 2, 3  # latent frames, rows, columns
F = 8 * (T - 1) + 1
N = T * H * W


def make_inputs(bsz=2, seed=0, window=5, layers=3, dim=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, N, TINY_ARCH.in_channels, generator=g)
    t = torch.rand(bsz, N, generator=g)
    text = torch.randn(bsz, 4, TINY_ARCH.caption_channels, generator=g)
    text_mask = torch.ones(bsz, 4)
    fps = torch.full((bsz,), 25.0)
    coords = video_coords(bsz, T, H, W, fps, torch.device("cpu"))
    feats = torch.randn(bsz, 40, layers, dim, generator=g)
    windows, valid = sample_audio_windows(feats, torch.full((bsz,), 40), fps, F, window, 50.0)
    frame_idx = video_token_grid(bsz, T, H, W, torch.device("cpu"))[0]
    audio = AudioInputs(windows=windows, window_valid=valid, token_frame_index=frame_idx, gate=torch.ones(bsz, N))
    return x, t, text, text_mask, coords, audio


def adapted_and_base():
    base = tiny_transformer(0)
    dit = TalkingHeadDiT(tiny_transformer(0), tiny_adapter_config())
    return base, dit


def base_forward(base, x, t, text, text_mask, coords):
    return base(x, text, t * TIMESTEP_SCALE, text_mask, video_coords=coords, return_dict=False)[0]


def randomise_out(dit, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in dit.transformer.transformer_blocks:
            block.audio_attn.to_out.weight.copy_(torch.randn(block.audio_attn.to_out.weight.shape, generator=g))


def test_zero_init_adapter_equals_unadapted_diffusers_model_exactly():
    base, dit = adapted_and_base()
    x, t, text, text_mask, coords, audio = make_inputs()
    with torch.no_grad():
        ref = base_forward(base, x, t, text, text_mask, coords)
        out = dit(x, t, text, text_mask, coords, audio)
        out_null = dit(x, t, text, text_mask, coords, None)
    assert torch.equal(out, ref)
    assert torch.equal(out_null, ref)


def test_trained_adapter_changes_output_and_audio_matters():
    _, dit = adapted_and_base()
    randomise_out(dit)
    x, t, text, text_mask, coords, audio = make_inputs()
    with torch.no_grad():
        a = dit(x, t, text, text_mask, coords, audio)
        silent = AudioInputs(audio.windows * 0, audio.window_valid, audio.token_frame_index, audio.gate)
        b = dit(x, t, text, text_mask, coords, silent)
        c = dit(x, t, text, text_mask, coords, None)
    assert not torch.allclose(a, b)
    assert not torch.allclose(b, c)  # the null condition is projector(0), not "no adapter"


def test_gate_restricts_the_update_to_masked_tokens_eq6():
    # Eq. 6: z_out = z_in + M ⊙ AudioAttn(z_in). With a single block, tokens whose gate is 0 must come
    # out exactly as without the adapter, and gated tokens must differ by exactly AudioAttn(z_in).
    base = tiny_transformer(0)
    base.transformer_blocks = base.transformer_blocks[:1]
    dit = TalkingHeadDiT(tiny_transformer(0), None)
    dit.transformer.transformer_blocks = dit.transformer.transformer_blocks[:1]
    cfg = tiny_adapter_config()
    cfg.num_layers = 1
    dit = TalkingHeadDiT(dit.transformer, cfg)
    randomise_out(dit)
    x, t, text, text_mask, coords, audio = make_inputs()
    gate = torch.zeros(2, N)
    gate[:, 5:11] = 1.0
    audio.gate = gate

    with torch.no_grad():
        out = dit(x, t, text, text_mask, coords, audio)
        ref = base_forward(base, x, t, text, text_mask, coords)
    off = gate == 0
    assert torch.equal(out[off], ref[off])
    assert not torch.allclose(out[~off], ref[~off])


def test_gated_term_equals_mask_times_audio_attention():
    _, dit = adapted_and_base()
    randomise_out(dit)
    x, t, text, text_mask, coords, audio = make_inputs()
    gate = (torch.rand(2, N, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    audio.gate = gate
    block = dit.transformer.transformer_blocks[1]
    record = {}

    def hook(module, args, kwargs, output):
        record["h"] = args[0]
        record["out"] = output

    block.attn2.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        dit.audio_state.current = dit.audio_conditioning(audio)
        cond = dit.audio_state.current
        dit.transformer(x, text, t * TIMESTEP_SCALE, text_mask, video_coords=coords, return_dict=False)
        h = record["h"]
        proc = block.attn2.processor
        enc = dit.transformer.caption_projection(text)
        mask_bias = ((1 - text_mask) * -10000.0).unsqueeze(1)
        text_only = proc.base(block.attn2, h, enc, mask_bias, None)
        expected = text_only + gate[..., None] * block.audio_attn(h + text_only, cond.tokens, cond.attn_mask)
    torch.testing.assert_close(record["out"], expected, rtol=0, atol=1e-6)


def test_audio_attention_is_local_to_each_latent_frame():
    _, dit = adapted_and_base()
    randomise_out(dit)
    x, t, text, text_mask, coords, audio = make_inputs(bsz=1)
    # Change the audio only of the video frames of latent frame 2 (frames 9..16).
    other = audio.windows.clone()
    other[:, 9:17] += 5.0
    changed = AudioInputs(other, audio.window_valid, audio.token_frame_index, audio.gate)
    # One block only: deeper blocks would spread the change through self-attention.
    dit.transformer.transformer_blocks = dit.transformer.transformer_blocks[:1]
    block = dit.transformer.transformer_blocks[0]
    outs = []
    block.attn2.register_forward_hook(lambda m, a, k, o: outs.append(o), with_kwargs=True)
    with torch.no_grad():
        dit(x, t, text, text_mask, coords, audio)
        dit(x, t, text, text_mask, coords, changed)
    diff = (outs[0] - outs[1]).abs().sum(-1)[0]  # [N]
    frame = audio.token_frame_index[0]
    assert torch.all(diff[frame != 2] == 0)
    assert torch.all(diff[frame == 2] > 0)


def test_projection_pools_frames_like_the_vae_and_starts_as_average_pooling():
    cfg = tiny_adapter_config()
    proj = AudioProjection(cfg)
    x = torch.randn(2, 17, cfg.window, cfg.adapter_dim)
    pooled = proj.pool_frames(x)
    assert pooled.shape == (2, 3, cfg.window, cfg.adapter_dim)
    torch.testing.assert_close(pooled[:, 0], x[:, 0])
    torch.testing.assert_close(pooled[:, 1], x[:, 1:9].mean(1))
    torch.testing.assert_close(pooled[:, 2], x[:, 9:17].mean(1))
    with pytest.raises(ValueError, match="8k\\+1"):
        proj.pool_frames(torch.randn(1, 16, cfg.window, cfg.adapter_dim))
    tokens = proj(torch.zeros(1, 17, cfg.window, cfg.feature_layers, cfg.feature_dim))
    assert tokens.shape == (1, 3, cfg.window, cfg.adapter_dim)


def test_adapter_state_dict_round_trip_and_mismatch_errors():
    _, dit = adapted_and_base()
    randomise_out(dit)
    state = audio_adapter_state_dict(dit.transformer)
    assert state and all(k.startswith(("audio_projection.", "transformer_blocks.")) for k in state)
    fresh = TalkingHeadDiT(tiny_transformer(0), tiny_adapter_config())
    load_audio_adapter_state_dict(fresh.transformer, state, "mem")
    for k, v in audio_adapter_state_dict(fresh.transformer).items():
        assert torch.equal(v, state[k])

    wider = TalkingHeadDiT(tiny_transformer(0), tiny_adapter_config(window=7))
    with pytest.raises(ValueError, match=r"shape mismatches .*pos_embed"):
        load_audio_adapter_state_dict(wider.transformer, state, "stage1.safetensors")
    partial = dict(state)
    partial.pop("audio_projection.norm.weight")
    with pytest.raises(ValueError, match="missing keys"):
        load_audio_adapter_state_dict(fresh.transformer, partial, "x")


def test_attach_refuses_a_mismatched_dit():
    cfg = tiny_adapter_config()
    cfg.num_layers = 5
    with pytest.raises(ValueError, match="5 blocks"):
        TalkingHeadDiT(tiny_transformer(0), cfg)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    results = []
    for ckpt in (False, True):
        _, dit = adapted_and_base()
        randomise_out(dit)
        if ckpt:
            dit.transformer.enable_gradient_checkpointing()
        dit.transformer.train()
        x, t, text, text_mask, coords, audio = make_inputs()
        out = dit(x, t, text, text_mask, coords, audio)
        out.square().mean().backward()
        results.append({n: p.grad.clone() for n, p in dit.named_parameters() if p.grad is not None})
    assert results[0].keys() == results[1].keys()
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=1e-5, atol=1e-6)


def test_paper_scale_adapter_is_about_two_billion_parameters():
    # Built on the meta device: the shapes of the 13B DiT's adapter without allocating it.
    from omegaconf import OmegaConf

    from trainer.config.compose import compose_config
    from trainer.model.audio_adapter import AudioCrossAttention
    from trainer.model.dit import adapter_config

    cfg = compose_config("train", ["experiment=edityourself_stage1"])
    adapter = adapter_config(OmegaConf.to_object(cfg.audio), OmegaConf.to_object(cfg.model.transformer.arch))
    with torch.device("meta"):
        proj, attn = AudioProjection(adapter), AudioCrossAttention(adapter)
    total = sum(p.numel() for p in proj.parameters()) + adapter.num_layers * sum(p.numel() for p in attn.parameters())
    assert adapter.num_layers == 48 and adapter.inner_dim == 4096
    assert 1.8e9 < total < 2.2e9
