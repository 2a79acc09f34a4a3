"""Objectives against direct computations: timesteps, Eq. 5, Eq. 8, KNN noise, contrastive FM, dropout."""

import pytest
import torch

from trainer.objectives.conditions import FRAME_REF_SIDES, sample_conditions
from trainer.objectives.contrastive import contrastive_sq_error
from trainer.objectives.flow_matching import (
    masked_sq_error,
    noise_mask,
    noise_tokens,
    normalized_loss,
    velocity_target,
)
from trainer.objectives.immiscible import knn_noise
from trainer.objectives.step import frame_reference_block
from trainer.objectives.timesteps import sample_timesteps, time_bin_label, time_bins


def test_timesteps_concentrate_in_the_high_noise_band():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(100_000, loc=2.05, scale=1.0, generator=g)
    share = ((t >= 0.60) & (t <= 0.98)).float().mean().item()
    assert 0.90 <= share <= 0.94
    assert t.min() > 0 and t.max() < 1
    # The location is a real knob: loc 0 puts far fewer draws in that band.
    t0 = sample_timesteps(100_000, loc=0.0, generator=torch.Generator().manual_seed(0))
    assert ((t0 >= 0.60) & (t0 <= 0.98)).float().mean().item() < 0.5


def test_eq5_leaves_unmasked_tokens_bit_identical_and_mixes_masked_ones():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 50, 8, generator=g)
    eps = torch.randn(2, 50, 8, generator=g)
    t = torch.tensor([0.3, 0.9])
    m = (torch.rand(2, 50, generator=g) > 0.5).float()
    x_t, t_tok = noise_tokens(x0, eps, t, m)
    keep = m == 0
    assert torch.equal(x_t[keep], x0[keep])
    expected = (1 - t[:, None, None]) * x0 + t[:, None, None] * eps
    assert torch.equal(x_t[~keep], expected[~keep])
    assert torch.equal(t_tok, t[:, None] * m)


def test_noise_mask_v2v_off_is_all_ones_and_first_frame_is_clean():
    face = torch.zeros(3, 4, 2, 2, dtype=torch.bool)
    face[:, :, 0, 0] = True
    m = noise_mask(face, v2v=torch.tensor([True, False, True]), first_frame=torch.tensor([True, True, False]))
    assert torch.equal(m[0, 1:], face[0, 1:].float()) and m[0, 0].sum() == 0
    assert torch.all(m[1, 1:] == 1) and m[1, 0].sum() == 0  # V2V off: M = 1 (but frame 0 stays clean)
    assert torch.equal(m[2], face[2].float())  # first frame off: text-to-video on frame 0 too


def test_eq8_normalises_by_masked_elements_globally():
    g = torch.Generator().manual_seed(2)
    pred = torch.randn(3, 20, 4, generator=g)
    x0 = torch.randn(3, 20, 4, generator=g)
    eps = torch.randn(3, 20, 4, generator=g)
    m = torch.zeros(3, 20)
    m[0, :5] = 1
    m[1, :15] = 1  # sample 2 has no masked token at all
    err, count = masked_sq_error(pred, velocity_target(x0, eps), m)
    loss = normalized_loss(err, count)
    direct = sum(((pred[b, i] - (eps[b, i] - x0[b, i])) ** 2).sum() for b in range(3) for i in range(20) if m[b, i])
    assert count.tolist() == [20.0, 60.0, 0.0]
    torch.testing.assert_close(loss, direct / 80.0)
    # ||M·v − M⊙u||²: values outside M never matter.
    pred2 = pred.clone()
    pred2[m == 0] = 1e6
    torch.testing.assert_close(normalized_loss(*masked_sq_error(pred2, velocity_target(x0, eps), m)), loss)


def test_knn_keeps_the_nearest_candidate():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 30, 6, generator=g)
    m = (torch.rand(4, 30, generator=g) > 0.3).float()
    noise, choice = knn_noise(x0, m, k=4, generator=torch.Generator().manual_seed(7))
    # Redraw the same candidates and check the choice by brute force.
    cand = torch.randn((4, *x0.shape), generator=torch.Generator().manual_seed(7))
    for b in range(4):
        d = [float((((cand[j, b] - x0[b]) ** 2).sum(-1) * m[b]).sum()) for j in range(4)]
        assert choice[b].item() == min(range(4), key=d.__getitem__)
        assert torch.equal(noise[b], cand[choice[b], b])
    # With k = 1 the noise is the plain first draw.
    n1, c1 = knn_noise(x0, m, k=1, generator=torch.Generator().manual_seed(7))
    assert torch.equal(n1, cand[0]) and c1.eq(0).all()


def test_knn_noise_is_closer_than_plain_noise_on_average():
    x0 = torch.randn(64, 40, 8, generator=torch.Generator().manual_seed(4))
    m = torch.ones(64, 40)
    near, _ = knn_noise(x0, m, k=4, generator=torch.Generator().manual_seed(5))
    plain, _ = knn_noise(x0, m, k=1, generator=torch.Generator().manual_seed(5))
    assert (near - x0).pow(2).sum() < (plain - x0).pow(2).sum()


def test_contrastive_loss_equals_its_formula():
    g = torch.Generator().manual_seed(6)
    pred = torch.randn(3, 10, 4, generator=g)
    target = torch.randn(3, 10, 4, generator=g)
    m = (torch.rand(3, 10, generator=g) > 0.4).float()
    lam = 0.05
    total, pos, count = contrastive_sq_error(pred, target, m, lam)
    loss = total.sum() / count.sum()

    def mse(a, b, mask):
        return (((a - b) ** 2) * mask[..., None]).sum()

    neg_idx = [2, 0, 1]  # j = i - 1 (roll by one): always another sample
    direct = sum(mse(pred[i], target[i], m[i]) - lam * mse(pred[i], target[neg_idx[i]], m[i]) for i in range(3))
    torch.testing.assert_close(loss, direct / count.sum())
    torch.testing.assert_close(pos.sum(), sum(mse(pred[i], target[i], m[i]) for i in range(3)))
    # One sample has no negative: the term vanishes.
    total1, pos1, _ = contrastive_sq_error(pred[:1], target[:1], m[:1], lam)
    assert torch.equal(total1, pos1)


@pytest.mark.parametrize("p", [(1.0, 0.9, 0.9, 0.0), (0.9, 0.9, 0.9, 0.5)])
def test_condition_dropout_frequencies(p):
    g = torch.Generator().manual_seed(8)
    audio = ff = v2v = 0.0
    ids = 0
    n = 4000
    for _ in range(n // 8):
        f = sample_conditions(8, *p, generator=g)
        audio += f.audio.float().sum().item()
        ff += f.first_frame.float().sum().item()
        v2v += f.v2v.float().sum().item()
        ids += f.identity
    assert audio / n == pytest.approx(p[0], abs=0.03)
    assert ff / n == pytest.approx(p[1], abs=0.03)
    assert v2v / n == pytest.approx(p[2], abs=0.03)
    assert ids / (n // 8) == pytest.approx(p[3], abs=0.07)


def test_frame_references_are_drawn_per_batch_and_leave_other_draws_alone_when_off():
    g = torch.Generator().manual_seed(8)
    sides = [sample_conditions(2, 1.0, 0.9, 0.9, 0.5, generator=g, p_frame_ref=0.3).frame_refs for _ in range(3000)]
    on = [s for s in sides if s != "none"]
    assert len(on) / len(sides) == pytest.approx(0.3, abs=0.03)
    assert {s: on.count(s) / len(on) for s in FRAME_REF_SIDES} == pytest.approx(
        dict.fromkeys(FRAME_REF_SIDES, 1 / 3), abs=0.05
    )
    # At p_frame_ref = 0 nothing more is drawn: runs from before the option repeat exactly.
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(5):
        x, y = (
            sample_conditions(4, 0.9, 0.9, 0.9, 0.5, generator=a),
            sample_conditions(4, 0.9, 0.9, 0.9, 0.5, generator=b, p_frame_ref=0.0),
        )
        assert torch.equal(x.v2v, y.v2v) and torch.equal(x.audio, y.audio) and x.identity == y.identity
    assert torch.equal(a.get_state(), b.get_state())


def test_sayanythings_coupled_masking_drops_references_with_the_audio():
    g = torch.Generator().manual_seed(4)
    draws = [
        sample_conditions(8, 0.95, 0.9, 0.9, 1.0, generator=g, p_ref_drop=0.15, ref_follows_audio=True)
        for _ in range(1000)
    ]
    audio = torch.cat([f.audio for f in draws])
    reference = torch.cat([f.reference for f in draws])
    assert (~audio).float().mean().item() == pytest.approx(0.05, abs=0.01)
    assert not (reference & ~audio).any()  # audio off => reference off, always
    assert (~reference).float().mean().item() == pytest.approx(1 - 0.95 * 0.85, abs=0.015)
    assert (~reference[audio]).float().mean().item() == pytest.approx(0.15, abs=0.015)
    # Off (the default), nothing is drawn and every sample keeps its references.
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = sample_conditions(4, 0.9, 0.9, 0.9, 0.5, generator=a)
    same = sample_conditions(4, 0.9, 0.9, 0.9, 0.5, generator=b, p_ref_drop=0.0, ref_follows_audio=False)
    assert plain.reference is None and same.reference is None and torch.equal(a.get_state(), b.get_state())


def test_a_frame_reference_block_keeps_at_least_one_generated_frame():
    assert frame_reference_block("none", 4) == (0, 3, [])
    assert frame_reference_block("past", 4) == (1, 3, [0])
    assert frame_reference_block("future", 4) == (0, 2, [3])
    assert frame_reference_block("both", 4) == (1, 2, [0, 3])
    assert frame_reference_block("both", 2) == (0, 1, [])  # no frame would be left to generate
    assert frame_reference_block("past", 1) == (0, 0, [])


def test_time_bins_are_half_open_with_the_last_edge_in_the_last_bin():
    t = torch.tensor([0.0, 0.1, 0.25, 0.6, 0.99, 1.0, 0.05])
    assert time_bins(t, [0.0, 0.25, 0.5, 1.0]).tolist() == [0, 0, 1, 2, 2, 2, 0]
    assert time_bins(t, [0.1, 0.5, 0.9]).tolist() == [-1, 0, 0, 1, -1, -1, -1]  # outside the edges: -1
    assert time_bin_label(0.0, 0.25) == "t0-0.25" and time_bin_label(0.75, 1.0) == "t0.75-1"
