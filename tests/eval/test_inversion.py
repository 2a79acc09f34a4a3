"""Inversion editing (RASA): the inversion undoes the sampler, and the source's features steer the edit."""

import dataclasses

import pytest
import torch

from eval.sampler.batch import sample_inputs_from_batch
from eval.sampler.config import GuidanceConfig, InversionConfig, SamplerConfig, check_inversion
from eval.sampler.inversion import AttentionFeatures, injected_sites, invert, invert_edit
from eval.sampler.sampler import EulerSampler
from tests.eval.test_sampler import module_and_batch
from trainer.config.errors import ConfigError


@pytest.fixture(scope="module")
def source(eval_shards, tmp_path_factory):
    """A tiny model whose audio adapter is switched on (``to_out`` starts at zero), and one clip's V2V inputs."""
    module, batch = module_and_batch(eval_shards, tmp_path_factory.mktemp("inv"))
    torch.manual_seed(1)
    for block in module.dit.transformer.transformer_blocks:
        torch.nn.init.normal_(block.audio_attn.to_out.weight, std=0.05)
    model, cfg = module.model, module.cfg
    latents, refs = model.encode_latents(batch, torch.Generator().manual_seed(0))
    inputs = sample_inputs_from_batch(model, cfg, batch, latents, refs, mode="v2v", v2v_mask="face")
    return model, inputs


def sampler_for(model, guidance=1.0, **inversion):
    cfg = SamplerConfig(num_steps=16, guidance=GuidanceConfig(audio=guidance), block_size=0, seed=5)
    return EulerSampler(model.dit, dataclasses.replace(cfg, inversion=InversionConfig(**inversion)))


def relative_error(out, inputs):
    m = inputs.mask[:, None].expand_as(out) > 0
    return float((out[m] - inputs.latents[m]).norm() / inputs.latents[m].norm())


def new_audio(inputs):
    """The same clip driven by other speech: its audio windows reversed in time."""
    return dataclasses.replace(inputs, windows=inputs.windows.flip(1), window_valid=inputs.window_valid.flip(1))


def test_without_an_edit_the_inversion_gives_the_source_back(source):
    model, inputs = source
    errors = {}
    for iters in (0, 2, 4):
        sampler = sampler_for(model, fixed_point_iters=iters)
        out = sampler.sample(inputs, noise=invert(sampler, inputs))
        keep = inputs.mask[:, None].expand_as(out) == 0
        assert torch.equal(out[keep], inputs.latents[keep])  # conditions are never inverted
        errors[iters] = relative_error(out, inputs)
    # Measured on this tiny model at 16 steps: 0.088 (explicit guess), 0.0059 (2 iterations), 6e-4 (4); at the
    # paper's 40 steps 0.037, 5e-4 (2, the default) and 1e-5 (4).
    assert errors[4] < 2e-3 < errors[2] < errors[0]
    # The same through invert_edit with the source's own audio: the recorded features are what it computes anyway.
    same = invert_edit(sampler_for(model, fixed_point_iters=4), inputs, inputs)
    assert relative_error(same, inputs) < 2e-3
    # A noise drawn at random lands elsewhere: the inverted noise, not the sampler, carries the source.
    assert relative_error(sampler_for(model).sample(inputs), inputs) > 0.1


def test_the_sources_features_hold_the_edit_near_the_source(source):
    model, inputs = source
    target = new_audio(inputs)
    plain = sampler_for(model, guidance=2.0, shape_steps=0.0, speaking_steps=0.0, temporal_steps=0.0)
    free = invert_edit(plain, inputs, target)
    # No control on: the edit is the sampler started from the inverted noise under the new audio.
    assert torch.equal(free, plain.sample(target, noise=invert(plain, inputs)))
    steered = invert_edit(sampler_for(model, guidance=2.0, shape_steps=1.0, temporal_steps=1.0), inputs, target)
    assert relative_error(steered, inputs) < relative_error(free, inputs)
    # The speaking control alone changes the audio attention only: the edit moves, and still follows the new audio.
    speaking = invert_edit(
        sampler_for(model, guidance=2.0, shape_steps=0.0, temporal_steps=0.0, speaking_steps=0.5), inputs, target
    )
    assert not torch.equal(speaking, free) and not torch.equal(speaking, invert_edit(plain, inputs, inputs))


def test_the_audio_null_pass_keeps_its_null_audio_and_hooks_go_away(source):
    model, inputs = source
    sampler = sampler_for(model, speaking_steps=1.0)
    blocks = model.dit.transformer.transformer_blocks
    x = torch.randn(inputs.latents.shape[0], inputs.mask[0].numel(), inputs.latents.shape[1])
    features = AttentionFeatures(sampler)
    recorded, live = {}, {}
    with features.hooked():
        features.at_step("record", 0, frozenset({"audio_key"}))
        sampler.full_velocity(new_audio(inputs), x, 0.5, 0)
        recorded = features.recording[(0, "audio_key", 0)]
        features.at_step("inject", 0, frozenset({"audio_key"}))
        for audio_on in (True, False):
            sampler.guidance_pass = (True, audio_on)
            grab = blocks[0].audio_attn.to_k.register_forward_hook(lambda m, a, o, on=audio_on: live.__setitem__(on, o))
            model.dit(*_dit_args(sampler, inputs, x, audio_on))
            grab.remove()
    assert torch.equal(live[True], recorded)  # the audio-on pass reads the recorded (other) audio's keys
    assert not torch.equal(live[False], recorded)  # the null pass keeps the zeroed audio's keys
    assert all(not blocks[i].attn1.to_q._forward_hooks for i in range(len(blocks)))  # removed after
    with pytest.raises(ValueError, match="fixed_point_iters >= 1"):
        invert_edit(sampler_for(model, fixed_point_iters=0), inputs, inputs)
    assert all(not b.attn1.to_q._forward_hooks and not b.audio_attn.to_k._forward_hooks for b in blocks)


def _dit_args(sampler, inputs, x, audio_on):
    dit_in = sampler.model_inputs(inputs, x, 0.5, audio_on)
    return dit_in.tokens, dit_in.timestep, inputs.text, inputs.text_mask, dit_in.coords, dit_in.audio


def test_controls_cover_their_share_of_the_first_steps():
    cfg = InversionConfig(shape_steps=0.25, speaking_steps=0.5, temporal_steps=0.125)
    sites = [injected_sites(cfg, step, 8, has_audio=True) for step in range(8)]  # 2, 4 and 1 steps
    assert sites[0] == {"query", "key", "audio_query", "audio_key"}
    assert sites[1] == {"query", "audio_query", "audio_key"} and sites[3] == {"audio_query", "audio_key"}
    assert sites[4] == set() and injected_sites(cfg, 0, 8, has_audio=False) == {"query", "key"}


def test_bad_inputs_and_settings_are_refused(source):
    model, inputs = source
    with pytest.raises(ValueError, match="block_size=0"):
        invert_edit(EulerSampler(model.dit, SamplerConfig(num_steps=2, block_size=1)), inputs, inputs)
    other = dataclasses.replace(inputs, latents=inputs.latents + 1)
    with pytest.raises(ValueError, match="share the source latents"):
        invert_edit(sampler_for(model), inputs, other)
    with pytest.raises(ConfigError, match="sampler.inversion.shape_steps"):
        check_inversion(InversionConfig(shape_steps=1.5))
    with pytest.raises(ConfigError, match="fixed_point_iters"):
        check_inversion(InversionConfig(fixed_point_iters=0))
    cached = EulerSampler(model.dit, SamplerConfig(num_steps=2, block_size=0, teacache_threshold=0.03))
    with pytest.raises(ValueError, match="teacache_threshold=0"):
        invert_edit(cached, inputs, inputs)
