"""The Euler sampler: train/inference parity of the first model input, exact conditions, the integrator."""

import dataclasses

import pytest
import torch

import trainer.objectives.step as step_module
from eval.sampler.batch import sample_inputs_from_batch
from eval.sampler.config import GuidanceConfig, SamplerConfig
from eval.sampler.modes import mode_mask
from eval.sampler.sampler import EulerSampler, SampleInputs
from eval.sampler.tapsf import TAPSFConfig, TAPSFSchedule
from tests.train.conftest import stream_batches, tiny_overrides
from trainer.config.compose import load_train_config
from trainer.lightning_module import TalkingHeadModule
from trainer.model.sequence import patchify
from trainer.objectives.conditions import ConditionFlags
from trainer.objectives.timesteps import sampling_times


def module_and_batch(shards, tmp_path, *extra):
    cfg = load_train_config(tiny_overrides(shards, tmp_path, 1, *extra))
    torch.manual_seed(0)
    module = TalkingHeadModule(cfg).eval()
    return module, stream_batches(cfg, 1)[0]


@pytest.mark.parametrize("mask", ["enclosing", "adaptive"])
def test_first_model_input_equals_the_trainers(eval_shards, tmp_path, monkeypatch, mask):
    # Training conditions that match V2V lip sampling: V2V on, first frame noised too, identity refs, audio.
    module, batch = module_and_batch(
        eval_shards,
        tmp_path,
        "stage.p_v2v=1.0",
        "stage.p_ff=0.0",
        "stage.p_id=1.0",
        "stage.p_audio=1.0",
        f"data.mask={mask}",
    )
    latents, refs = module.model.encode_latents(batch, torch.Generator().manual_seed(0))
    monkeypatch.setattr(module.model, "encode_latents", lambda b, g: (latents, refs))
    # The sampler starts at t = 1; make the trainer draw exactly that time.
    monkeypatch.setattr(step_module, "sample_timesteps", lambda b, *a, **k: torch.ones(b))
    drawn = []
    knn_noise = step_module.knn_noise
    monkeypatch.setattr(step_module, "knn_noise", lambda *a: drawn.append(knn_noise(*a)) or drawn[-1])
    step = module.prepare_step(batch, torch.Generator().manual_seed(1))
    noise = drawn[0][0]  # the noise the trainer drew

    sampler = EulerSampler(module.dit, SamplerConfig(num_steps=40), module.cfg.objective.timestep_loc)
    inputs = sample_inputs_from_batch(module.model, module.cfg, batch, latents, refs, mode="v2v", v2v_mask="lip")
    x, _ = sampler.initial_state(inputs, noise)
    first = sampler.model_inputs(inputs, x, float(sampler.times[0]))

    assert first.num_ref == step.num_ref > 0
    assert torch.equal(first.tokens, step.tokens)
    assert torch.equal(first.timestep, step.timestep)
    assert torch.equal(first.coords, step.coords)
    assert torch.equal(first.audio.windows, step.audio.windows)
    assert torch.equal(first.audio.window_valid, step.audio.window_valid)
    assert torch.equal(first.audio.token_frame_index, step.audio.token_frame_index)
    assert torch.equal(first.audio.gate, step.audio.gate)
    assert torch.equal(inputs.mask.flatten(1), step.mask)
    assert torch.equal(inputs.text, step.text)


@pytest.mark.parametrize("sides", ["past", "future", "both"])
def test_a_block_with_frame_references_gets_the_trainers_input(eval_shards, tmp_path, monkeypatch, sides):
    # Training's frame-reference step (a fully synthetic block, the clip's edge frames as clean references)
    # and the sampler's TAPSF block with clean neighbours build the same first model input.
    module, batch = module_and_batch(eval_shards, tmp_path, "stage.p_frame_ref=1.0")
    model, cfg = module.model, module.cfg
    latents, refs = model.encode_latents(batch, torch.Generator().manual_seed(0))
    bsz, frames = latents.shape[0], latents.shape[2]
    yes = torch.ones(bsz, dtype=torch.bool)
    flags = ConditionFlags(audio=yes, first_frame=yes, v2v=yes, identity=True, frame_refs=sides)
    drawn = []
    knn_noise = step_module.knn_noise
    monkeypatch.setattr(step_module, "knn_noise", lambda *a: drawn.append(knn_noise(*a)) or drawn[-1])
    step = step_module.step_inputs(model, cfg, batch, latents, refs, torch.Generator().manual_seed(1), flags, yes * 1.0)

    first, last = int(sides != "future"), frames - 1 - int(sides != "past")
    assert step.grid[0] == last - first + 1 and not step.flags.v2v.any() and not step.flags.first_frame.any()
    inputs = sample_inputs_from_batch(model, cfg, batch, latents, refs, mode="t2v")
    clean = [f for f in range(frames) if not first <= f <= last]
    inputs.mask[:, clean] = 0  # the neighbours are clean source frames; the block between them is generated
    sampler = EulerSampler(model.dit, SamplerConfig(num_steps=40, block_size=frames), cfg.objective.timestep_loc)
    block_refs = list(inputs.references) + sampler.block_frame_references(inputs, first, last)
    mask = inputs.mask[:, first : last + 1].flatten(1)
    grid = (last - first + 1, *latents.shape[3:])
    first_input = sampler.model_inputs(inputs, drawn[0][0], 1.0, True, first, grid, mask, block_refs)

    assert step.num_ref == first_input.num_ref == step.num_ref > inputs.references[0].count
    assert torch.equal(first_input.tokens, step.tokens)
    assert torch.equal(first_input.timestep, step.timestep)
    assert torch.equal(first_input.coords, step.coords)
    assert torch.equal(first_input.audio.token_frame_index, step.audio.token_frame_index)
    assert torch.equal(first_input.audio.gate, step.audio.gate)
    assert torch.equal(mask, step.mask) and bool(step.mask.eq(1).all())  # references are never in the loss


def test_a_dropped_reference_is_zero_for_its_sample_only(eval_shards, tmp_path):
    module, batch = module_and_batch(eval_shards, tmp_path, "stage.p_ref_drop=0.5", "stage.p_id=1.0")
    model, cfg = module.model, module.cfg
    latents, refs = model.encode_latents(batch, torch.Generator().manual_seed(0))
    bsz = latents.shape[0]
    yes = torch.ones(bsz, dtype=torch.bool)
    reference = torch.arange(bsz) % 2 == 0  # every other sample keeps its references
    flags = ConditionFlags(audio=yes, first_frame=yes, v2v=yes, identity=True, reference=reference)
    step = step_module.step_inputs(model, cfg, batch, latents, refs, torch.Generator().manual_seed(1), flags)
    ref_tokens = step.tokens[:, : step.num_ref]
    assert step.num_ref > 0 and bsz >= 2
    assert ref_tokens[~reference].abs().sum() == 0 and (ref_tokens[reference].abs().sum(dim=(1, 2)) > 0).all()
    kept = step_module.step_inputs(
        model, cfg, batch, latents, refs, torch.Generator().manual_seed(1), dataclasses.replace(flags, reference=yes)
    )
    assert torch.equal(kept.tokens[reference], step.tokens[reference])  # the kept samples are untouched
    assert torch.equal(kept.coords, step.coords)  # same positions: only the content is the null reference


def test_sampling_keeps_conditions_and_repeats_with_its_seed(eval_shards, tmp_path):
    module, batch = module_and_batch(eval_shards, tmp_path)
    latents, refs = module.model.encode_latents(batch, torch.Generator().manual_seed(0))
    cfg = SamplerConfig(num_steps=3, guidance=GuidanceConfig(audio=2.0, text=1.5), seed=7)
    sampler = EulerSampler(module.dit, cfg)
    for mode, v2v_mask in (("v2v", "lip"), ("v2v", "face"), ("v2v", "head"), ("i2v", "lip"), ("t2v", "lip")):
        inputs = sample_inputs_from_batch(module.model, module.cfg, batch, latents, refs, mode=mode, v2v_mask=v2v_mask)
        out = sampler.sample(inputs)
        assert out.shape == latents.shape and torch.isfinite(out).all()
        keep = inputs.mask[:, None].expand_as(out) == 0
        assert torch.equal(out[keep], latents[keep]), mode  # conditions come back bit for bit
        assert not torch.equal(out[~keep], latents[~keep])
        assert torch.equal(sampler.sample(inputs), out)  # the seed fixes the sample
    lip = sample_inputs_from_batch(module.model, module.cfg, batch, latents, refs, v2v_mask="lip").mask
    face = sample_inputs_from_batch(module.model, module.cfg, batch, latents, refs, v2v_mask="face").mask
    head = sample_inputs_from_batch(module.model, module.cfg, batch, latents, refs, v2v_mask="head").mask
    assert lip.sum() <= face.sum() <= head.sum() and (head >= face).all()
    i2v = sample_inputs_from_batch(module.model, module.cfg, batch, latents, refs, mode="i2v").mask
    assert i2v[:, 0].sum() == 0 and i2v[:, 1:].eq(1).all()


def test_teacache_skips_blocks_only_on_steps_whose_windows_stay_put(eval_shards, tmp_path):
    module, batch = module_and_batch(eval_shards, tmp_path)
    model, cfg = module.model, module.cfg
    latents, refs = model.encode_latents(batch, torch.Generator().manual_seed(0))
    inputs = sample_inputs_from_batch(model, cfg, batch, latents, refs)
    blocks = model.dit.transformer.transformer_blocks
    settings = {"num_steps": 8, "guidance": GuidanceConfig(audio=2.0, text=1.0), "seed": 3, "block_size": 0}
    plain = EulerSampler(model.dit, SamplerConfig(**settings)).sample(inputs)

    # A threshold no change stays under: every block pass runs, and the sample is the uncached one exactly.
    never = EulerSampler(model.dit, SamplerConfig(**settings, teacache_threshold=1e-12))
    assert torch.equal(never.sample(inputs), plain)
    assert never.teacache.skipped == 0 and never.teacache.computed == 2 * 6  # 6 middle steps x 2 guidance passes
    assert model.dit.transformer.transformer_blocks is blocks  # the block list is restored after sampling

    # A threshold every change stays under: each guidance pass computes its first middle step, reuses it after.
    always = EulerSampler(model.dit, SamplerConfig(**settings, teacache_threshold=1e9))
    cached = always.sample(inputs)
    assert always.teacache.computed == 2 and always.teacache.skipped == 2 * 5
    assert torch.isfinite(cached).all() and not torch.equal(cached, plain)
    keep = inputs.mask[:, None].expand_as(cached) == 0
    assert torch.equal(cached[keep], latents[keep])  # conditions still come back bit for bit
    assert torch.equal(always.sample(inputs), cached)  # a fresh cache per sample: the same result again


def test_teacache_keeps_one_cache_per_tapsf_window(eval_shards, tmp_path):
    module, batch = module_and_batch(eval_shards, tmp_path)
    model, cfg = module.model, module.cfg
    latents, refs = model.encode_latents(batch, torch.Generator().manual_seed(0))
    inputs = sample_inputs_from_batch(model, cfg, batch, latents, refs)
    frames = latents.shape[2]
    settings = {"num_steps": 8, "guidance": GuidanceConfig(audio=1.0, text=1.0), "block_size": 2, "shift": 1}
    sampler = EulerSampler(model.dit, SamplerConfig(**settings, teacache_threshold=1e9))
    out = sampler.sample(inputs)
    windows = len(TAPSFSchedule(frames, 8, TAPSFConfig(2, 1, 0.75)).blocks(sampler.cacheable.index(True)))
    assert frames > 2 and sampler.teacache.computed == windows  # one pass per window at the first middle step
    assert sampler.teacache.skipped == windows * 5 and torch.isfinite(out).all()


class Oracle(torch.nn.Module):
    """A velocity field whose exact flow ends at ``target``: ``v(x, t) = (x − target) / t`` per token.

    Its output also depends on the audio and text switches, so guidance arithmetic can be checked.
    """

    def __init__(self, target, audio_shift=0.0, text_shift=0.0):
        super().__init__()
        self.target, self.audio_shift, self.text_shift = target, audio_shift, text_shift

    def forward(self, tokens, timestep, text, text_mask, coords, audio):
        n_ref = tokens.shape[1] - self.target.shape[1]
        x, t = tokens[:, n_ref:], timestep[:, n_ref:, None]
        v = torch.where(t > 0, (x - self.target) / t.clamp(min=1e-12), torch.zeros_like(x))
        v = v + self.audio_shift * float(audio.windows.abs().sum() > 0) + self.text_shift * float(text.abs().sum() > 0)
        return torch.cat([torch.zeros_like(tokens[:, :n_ref]), v], dim=1)


def oracle_inputs(bsz=2, frames=3, h=2, w=2, ch=4):
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(bsz, ch, frames, h, w, generator=gen)
    boxes = torch.tensor([[[0.0, 0.0, 32.0, 64.0]] * (8 * (frames - 1) + 1)] * bsz)
    mask = mode_mask("v2v", (frames, h, w), bsz, "face", face_boxes=boxes)
    return SampleInputs(
        latents=latents,
        mask=mask,
        fps=torch.full((bsz,), 25.0),
        windows=torch.ones(bsz, 17, 2, 1, 3),
        window_valid=torch.ones(bsz, 17, 2, dtype=torch.bool),
        text=torch.ones(bsz, 1, 3),
        text_mask=torch.ones(bsz, 1),
        null_text=torch.zeros(bsz, 1, 3),
        null_text_mask=torch.ones(bsz, 1),
    )


def test_euler_integrates_the_flow_to_its_end():
    inputs = oracle_inputs()
    target = torch.randn(patchify(inputs.latents).shape, generator=torch.Generator().manual_seed(1))
    sampler = EulerSampler(Oracle(target), SamplerConfig(num_steps=40, guidance=GuidanceConfig(1.0, 1.0)))
    out = patchify(sampler.sample(inputs))
    m = inputs.mask.flatten(1)[..., None].expand_as(out) > 0
    # A straight path is integrated exactly by Euler whatever the step sizes.
    torch.testing.assert_close(out[m], target[m], rtol=0, atol=1e-5)
    assert torch.equal(out[~m], patchify(inputs.latents)[~m])


def test_guidance_combines_the_passes():
    inputs = oracle_inputs()
    target = torch.zeros(patchify(inputs.latents).shape)
    x = torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
    base = Oracle(target)
    shifted = Oracle(target, audio_shift=1.0, text_shift=10.0)
    for s_audio, s_text in ((1.0, 1.0), (3.0, 1.0), (2.0, 4.0)):
        cfg = SamplerConfig(guidance=GuidanceConfig(audio=s_audio, text=s_text))
        v0 = EulerSampler(base, cfg).full_velocity(inputs, x, 0.5, 0)
        v = EulerSampler(shifted, cfg).full_velocity(inputs, x, 0.5, 0)
        # v(∅,∅) + s_text·(text effect) + s_audio·(audio effect), with effects 10 and 1.
        torch.testing.assert_close(v - v0, torch.full_like(v, s_text * 10.0 + s_audio * 1.0))


def test_sampling_times_follow_the_training_shift():
    t = sampling_times(40, 2.05)
    assert t[0] == 1 and t[-1] == 0 and (t[1:] < t[:-1]).all() and len(t) == 41
    # The median of sigmoid(N(loc, 1)) sits at the schedule's midpoint.
    torch.testing.assert_close(sampling_times(2, 2.05)[1], torch.sigmoid(torch.tensor(2.05, dtype=torch.float64)))
    with pytest.raises(ValueError, match="num_steps"):
        sampling_times(0)


def test_long_videos_sample_in_tapsf_blocks_with_global_positions():
    frames, h, w = 40, 2, 2
    inputs = oracle_inputs(bsz=1, frames=frames)
    inputs.mask = torch.ones_like(inputs.mask)  # every token generated: the oracle's flow must end at target
    target = torch.randn(patchify(inputs.latents).shape, generator=torch.Generator().manual_seed(3))
    full_coords = EulerSampler(Oracle(target), SamplerConfig()).model_inputs(inputs, target, 1.0).coords
    calls = []

    class BlockOracle(Oracle):
        def forward(self, tokens, timestep, text, text_mask, coords, audio):
            n = tokens.shape[1]
            first = int(audio.token_frame_index[0, 0])  # global latent frame of the block's first token
            calls.append(n)
            # RoPE and audio routing use the block's global frame positions.
            assert torch.equal(coords, full_coords[:, :, first * h * w : first * h * w + n])
            saved = self.target
            self.target = saved[:, first * h * w : first * h * w + n]
            try:
                return super().forward(tokens, timestep, text, text_mask, coords, audio)
            finally:
                self.target = saved

    cfg = SamplerConfig(num_steps=8, guidance=GuidanceConfig(1.0, 1.0), block_size=17, shift=5)
    out = patchify(EulerSampler(BlockOracle(target), cfg).sample(inputs))
    torch.testing.assert_close(out, target, rtol=0, atol=1e-5)  # a local flow is integrated exactly
    assert max(calls) == 17 * h * w  # never more than one block in a DiT call
    assert len(calls) >= 8 * 3  # 40 frames: at least 3 blocks per step


def test_fully_synthetic_blocks_get_forward_backward_frame_references():
    frames, h, w = 40, 2, 2
    inputs = oracle_inputs(bsz=1, frames=frames)
    inputs.mask = mode_mask("i2v", (frames, h, w), 1)  # long I2V: only latent frame 0 is clean
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, tokens, timestep, text, text_mask, coords, audio):
            video = audio.token_frame_index[0] >= 0
            first = int(audio.token_frame_index[0, video][0])
            refs = coords[0, 0, ~video]  # temporal RoPE coordinate (seconds) of the reference tokens
            seen[first] = (int((~video).sum()), sorted(set(refs.tolist())))
            assert torch.equal(timestep[:, ~video], torch.zeros_like(timestep[:, ~video]))  # clean references
            return torch.zeros_like(tokens)

    cfg = SamplerConfig(num_steps=1, guidance=GuidanceConfig(1.0, 1.0), block_size=17)
    EulerSampler(Recorder(), cfg).sample(inputs)
    assert seen[0][0] == 0  # the block holding the clean first frame needs no reference
    later = [f for f in seen if f > 0]
    assert later
    for lo in later:
        count, times = seen[lo]
        assert count == h * w  # one full frame: the closest clean frame before the block (frame 0)
        # Eq. 7: farther than 3 latent frames -> placed 3 before the block's start (8τ - 7 frames / fps).
        tau = lo - 3 if lo > 3 else 0
        assert times == [pytest.approx(max(8 * tau - 7, 0) / 25.0)]


def test_prefix_conditioning_generates_window_by_window_and_keeps_the_first_frame():
    frames, h, w = 40, 2, 2
    inputs = oracle_inputs(bsz=1, frames=frames)
    inputs.mask = mode_mask("i2v", (frames, h, w), 1)
    target = torch.randn(patchify(inputs.latents).shape, generator=torch.Generator().manual_seed(4))
    calls = []

    class WindowOracle(Oracle):
        def forward(self, tokens, timestep, text, text_mask, coords, audio):
            first = int(audio.token_frame_index[0, 0])
            n = tokens.shape[1]
            calls.append((first, n, float(timestep.min())))
            saved = self.target
            self.target = saved[:, first * h * w : first * h * w + n]
            try:
                return super().forward(tokens, timestep, text, text_mask, coords, audio)
            finally:
                self.target = saved

    cfg = SamplerConfig(num_steps=6, guidance=GuidanceConfig(1.0, 1.0), block_size=17, long_video="prefix")
    cfg.anchor_alignment = False  # alignment changes the values; the plain windows must reach the target
    out = EulerSampler(WindowOracle(target), cfg).sample(inputs)
    m = inputs.mask[:, None].expand_as(out) > 0
    assert torch.equal(out[~m], inputs.latents[~m])  # the I2V first frame is kept exactly
    torch.testing.assert_close(patchify(out)[:, h * w :], target[:, h * w :], rtol=0, atol=1e-5)
    starts = sorted({c[0] for c in calls})
    assert starts == [0, 13, 26] and max(c[1] for c in calls) == 17 * h * w  # 17-frame windows, 4 shared
    with pytest.raises(ValueError, match="tapsf"):
        v2v = oracle_inputs(bsz=1, frames=frames)
        EulerSampler(WindowOracle(target), cfg).sample(v2v)
