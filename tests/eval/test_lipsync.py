"""The lip-sync benchmark's held-out cases: ground truth aligned with the data_prep clips, arms and scores."""

from types import SimpleNamespace

import numpy as np
import pytest

from eval.clips import read_clips
from eval.lipsync.cases import dub_cases
from eval.lipsync.dubs import dub_video
from eval.lipsync.scores import ARMS, neighbour_correlation, score_case, summarize
from eval.metrics.dub import mouth_opening_change, pearson
from eval.metrics.pixel import psnr
from eval.sampler.config import SamplerConfig
from eval.sampler.sampler import EulerSampler
from launch.corpus import CorpusSpec, prepare_corpus
from trainer.config.compose import load_train_config
from trainer.stage_model import build_stage_model


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    spec = CorpusSpec(num_videos=2, seed=1000, fps=[25.0], duration_s=2.2, size=96, clip_frames=25)
    prepared = prepare_corpus(spec, tmp_path_factory.mktemp("heldout"))
    module = SimpleNamespace(cfg=load_train_config(["experiment=smoke", "data.shards=unused"]))
    clips = read_clips(prepared.shards, module.cfg, 8)
    return prepared, clips


@pytest.mark.slow
def test_ground_truth_lines_up_with_the_prepared_clips(heldout):
    prepared, clips = heldout
    cases = dub_cases(clips, prepared.corpus)
    assert len(cases) == len(clips) >= 2
    for case in cases:
        src = case.source
        assert src.record["source"] != case.driving.record["source"]  # another person's speech
        # Outside the region a mouth can reach, the ground truth is the source clip itself (up to two H.264
        # encodes of sensor noise), and it matches best without a shift: the clip's span picks the frames the
        # renderer draws.
        outside = ~case.masks

        def outside_psnr(a, b, mask):
            diff = a.astype(float) - b.astype(float)
            return 10 * np.log10(255**2 / (diff[mask] ** 2).mean())

        aligned = outside_psnr(case.ground_truth, src.frames, outside)
        assert aligned > 28
        assert aligned > outside_psnr(case.ground_truth[1:], src.frames[:-1], outside[1:])
        assert aligned > outside_psnr(case.ground_truth[:-1], src.frames[1:], outside[:-1])
        # Inside it, the ground truth's mouth follows the driving speech, the source's does not.
        assert pearson(mouth_opening_change(case.ground_truth, case.closed, case.masks), case.opening) > 0.9
        assert case.driving_audio.shape[0] == round(src.frames.shape[0] / src.fps * case.sample_rate)
        # The mouth's reach (the `--paste mouth` mask) holds what a dub changes and little of the box's static
        # skin: the ground truth differs from the closed mouth inside it, hardly at all outside it.
        change = ((case.ground_truth.astype(float) - case.closed.astype(float)) ** 2).sum(axis=-1)
        assert change[case.reach > 0.5].sum() > 0.995 * change.sum()
        assert 0.1 < case.reach[case.masks].mean() < 0.7
        assert case.reach[~case.masks].sum() < 0.05 * case.reach.sum()  # only its feathered edge


@pytest.mark.slow
def test_scores_rank_the_ground_truth_above_the_source(heldout):
    prepared, clips = heldout
    case = dub_cases(clips, prepared.corpus)[0]
    blurred = (case.ground_truth.astype(float) * 0.9 + 12).astype(np.uint8)
    videos = {
        "trained": case.ground_truth,
        "base": case.source.frames,
        "source": case.source.frames,
        "vae_ceiling": blurred,
    }
    scores = score_case(case, videos)
    assert scores.mouth_mse["trained"] == 0.0 < scores.mouth_mse["vae_ceiling"] < scores.mouth_mse["source"]
    assert scores.openness_corr["trained"] > 0.9 > scores.openness_corr["base"]
    assert scores.psnr_trained == float("inf") or scores.psnr_trained > 60
    summary = summarize([scores])
    gap = scores.mouth_mse["source"] / (scores.mouth_mse["source"] - scores.mouth_mse["vae_ceiling"])
    assert summary["gap_closed"] == pytest.approx(gap)
    assert set(f"mouth_mse_{a}" for a in ARMS) <= set(summary)
    assert neighbour_correlation(case.source.frames) > 0.8
    noise = np.random.default_rng(0).integers(0, 256, case.source.frames.shape, dtype=np.uint8)
    assert abs(neighbour_correlation(noise)) < 0.05
    assert psnr(case.ground_truth, case.source.frames) > 20


@pytest.mark.slow
def test_a_mouth_paste_keeps_the_source_outside_the_mouths_reach(heldout):
    prepared, clips = heldout
    case = dub_cases(clips, prepared.corpus)[0]
    cfg = load_train_config(["experiment=smoke", "data.shards=unused"])
    model, _ = build_stage_model(cfg)
    sampler = EulerSampler(model.eval().dit, SamplerConfig(num_steps=2), cfg.objective.timestep_loc)
    with pytest.raises(ValueError, match="paste_region='lips'"):
        dub_video(model, cfg, sampler, case, 0, paste_region="lips")
    tokens, token_mask = dub_video(model, cfg, sampler, case, 0)
    mouth, mouth_mask = dub_video(model, cfg, sampler, case, 0, paste_region="mouth")
    np.testing.assert_allclose(mouth_mask, token_mask * case.reach)
    # Outside the reach the dub is the source; inside it, the same generated pixels as the token paste.
    outside = mouth_mask == 0
    np.testing.assert_array_equal(mouth[outside], case.source.frames[outside])
    assert (token_mask[outside] > 0).any()  # the token paste did take generated pixels there
    full = mouth_mask > 0.999
    assert full.any()
    assert np.abs(mouth[full].astype(int) - tokens[full].astype(int)).max() <= 1
