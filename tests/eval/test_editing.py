"""Visual dialog editing on latent sequences (:mod:`eval.sampler.editing`): lengths, masks, RoPE, retime."""

import pytest
import torch

from eval.sampler.edit_plan import Edit
from eval.sampler.editing import add_frames, apply_edits, remove_frames, rerender_frames, retime_frames
from tests.eval.edit_source import CPU, FACE, B, C, H, T, W, assert_content, frame_m, source
from trainer.model.masks import face_token_mask
from trainer.model.sequence import video_coords

# ---------------------------------------------------------------------------------------------- primitives


def test_addition_inserts_fully_noised_frames_and_face_masks_kept_ones():
    lat, face = source()
    seq = add_frames(lat, position=4, count=3, face_mask=face)
    assert seq.latents.shape == (B, C, T + 3, H, W)
    assert seq.source_index.tolist() == [0, 1, 2, 3, -1, -1, -1, *range(4, T)]
    assert seq.noise_frames.tolist() == [False] * 4 + [True] * 3 + [False] * (T - 4)
    assert frame_m(seq) == "ffffFFF" + "f" * (T - 4)
    assert seq.mask.shape == (B, (T + 3) * H * W)
    assert_content(seq, lat)
    assert seq.video_frames == 8 * (T + 3 - 1) + 1


def test_addition_at_both_ends():
    lat, face = source()
    assert add_frames(lat, 0, 2, face).source_index.tolist()[:3] == [-1, -1, 0]
    assert add_frames(lat, T, 2, face).source_index.tolist()[-3:] == [T - 1, -1, -1]


def test_removal_deletes_and_rerenders_neighbours_in_full():
    lat, face = source()
    seq = remove_frames(lat, 4, 7, context=1, face_mask=face)
    assert seq.num_frames == T - 3
    assert seq.source_index.tolist() == [0, 1, 2, 3, 7, 8, 9, 10, 11]
    assert frame_m(seq) == "fffFFffff"
    assert seq.noise_frames.tolist() == [False, False, False, True, True, False, False, False, False]
    assert not seq.new_frames.any()  # neighbours keep their source latents
    assert_content(seq, lat)

    seq2 = remove_frames(lat, 4, 7, context=2, face_mask=face)
    assert frame_m(seq2) == "ffFFFFfff"
    seq0 = remove_frames(lat, 4, 7, context=0, face_mask=face)
    assert frame_m(seq0) == "f" * 9


def test_removal_neighbour_region_can_be_a_token_box():
    lat, face = source()
    seq = remove_frames(lat, 4, 7, context=1, region=(0, 0, 4, 2), face_mask=None)
    m = seq.mask_grid()
    assert (m[:, 3, :, :2] == 1).all() and (m[:, 3, :, 2:] == 0).all()
    assert (m[:, 4, :, :2] == 1).all() and not seq.noise_frames.any()
    assert m[:, [0, 1, 2, 5, 6, 7, 8]].sum() == 0  # no face mask given: kept frames stay clean


def test_rerender_sets_region_on_span_and_keeps_length():
    lat, face = source()
    seq = rerender_frames(lat, 2, 5, region=(0, 0, 1, 5), face_mask=face)
    assert seq.num_frames == T and seq.source_index.tolist() == list(range(T))
    m = seq.mask_grid()
    assert (m[:, 2:5, 0] == 1).all() and (m[:, 2:5, 1] == 0).all()  # top row + face, nothing between
    assert (m[:, 2:5, FACE[0] : FACE[2], FACE[1] : FACE[3]] == 1).all()
    assert (m[:, [0, 1, 5], 0] == 0).all()
    full = rerender_frames(lat, 2, 5, region=None, face_mask=face)
    assert frame_m(full) == "ffFFF" + "f" * (T - 5)
    assert full.noise_frames.sum() == 3


def test_kept_frames_follow_their_own_face_mask_after_a_move():
    lat, _ = source()
    face = torch.zeros(B, T, H, W, dtype=torch.bool)
    for t in range(T):
        face[:, t, t % H, t % W] = True  # a different face token per source frame
    seq = add_frames(lat, 3, 2, face)
    m = seq.mask_grid()
    for i, s in enumerate(seq.source_index.tolist()):
        if s >= 0:
            assert torch.equal(m[:, i] > 0, face[:, s])


def test_face_boxes_go_through_face_token_mask():
    lat, _ = source()
    boxes = torch.tensor([32.0, 64.0, 120.0, 128.0]).expand(B, 8 * (T - 1) + 1, 4)
    seq = apply_edits(lat, [Edit("add", 0.0, duration_s=0.32)], fps=25, face_boxes=boxes)
    expected = face_token_mask(boxes, H, W)
    assert torch.equal(seq.mask_grid()[:, 1:] > 0, expected)


# ---------------------------------------------------------------------------------------------------- RoPE


@pytest.mark.parametrize("op", ["add", "remove", "retime"])
def test_rope_is_recomputed_on_the_edited_sequence(op):
    lat, face = source()
    fps = torch.tensor([25.0, 30.0])
    seq = {
        "add": lambda: add_frames(lat, 5, 3, face),
        "remove": lambda: remove_frames(lat, 2, 6, face_mask=face),
        "retime": lambda: retime_frames(lat, 2, 8, 9, face_mask=face),
    }[op]()
    coords = seq.rope_coords(fps)
    assert torch.equal(coords, video_coords(B, seq.num_frames, H, W, fps, CPU))
    assert seq.frame_index.tolist() == list(range(seq.num_frames))
    # A kept frame takes the time of its new slot: max(8i − 7, 0) / fps, not its source position.
    t = coords[:, 0].reshape(B, seq.num_frames, H * W)
    for i, s in enumerate(seq.source_index.tolist()):
        assert torch.allclose(t[:, i], (max(8 * i - 7, 0) / fps)[:, None].expand(B, H * W))
        if s >= 0:
            assert torch.equal(seq.latents[:, :, i], lat[:, :, s])


def test_rope_after_insertion_shifts_later_frames_by_the_inserted_time():
    lat, face = source()
    seq = add_frames(lat, 4, 2, face)
    t = seq.rope_coords(25.0)[0, 0].reshape(seq.num_frames, H * W)[:, 0]
    i_src6 = seq.source_index.tolist().index(6)
    assert i_src6 == 8
    assert t[i_src6].item() == pytest.approx((8 * 8 - 7) / 25)


# -------------------------------------------------------------------------------------------------- retime


def test_retime_lengthen_spreads_new_frames_evenly():
    lat, face = source()
    seq = retime_frames(lat, 2, 10, 12, face_mask=face)  # 8 → 12 frames: 4 additions
    src = seq.source_index.tolist()
    assert seq.num_frames == T + 4
    assert src[:2] == [0, 1] and src[-2:] == [10, 11]
    span = src[2:14]
    new_at = [i for i, s in enumerate(span) if s < 0]
    assert new_at == [1, 4, 7, 10]  # ⌊(j + ½)·12/4⌋
    assert [s for s in span if s >= 0] == list(range(2, 10))  # kept frames in order, none lost
    assert frame_m(seq) == "ff" + "".join("F" if s < 0 else "f" for s in span) + "ff"


def test_retime_shorten_spreads_removals_and_rerenders_neighbours():
    lat, face = source()
    seq = retime_frames(lat, 0, 12, 9, context=0, face_mask=face)  # 12 → 9: 3 removals
    src = seq.source_index.tolist()
    removed = sorted(set(range(T)) - set(src))
    assert removed == [2, 6, 10]  # ⌊(j + ½)·12/3⌋
    assert src == sorted(src) and seq.num_frames == 9
    assert frame_m(seq) == "f" * 9
    with_ctx = retime_frames(lat, 0, 12, 9, context=1, face_mask=face)
    # Each cut re-renders the frame before and after it: sources 1, 3, 5, 7, 9, 11.
    full = [s for s, c in zip(with_ctx.source_index.tolist(), frame_m(with_ctx)) if c == "F"]
    assert full == [1, 3, 5, 7, 9, 11]


def test_retime_counts_exact_for_many_factors():
    lat, face = source()
    for target in [1, 2, 5, 7, 11, 13, 20, 30]:
        seq = retime_frames(lat, 3, 9, target, face_mask=face)
        src = seq.source_index.tolist()
        assert seq.num_frames == T - 6 + target
        span = src[3 : 3 + target]
        if target > 6:
            assert sum(s < 0 for s in span) == target - 6
            assert [s for s in span if s >= 0] == list(range(3, 9))
        else:
            assert all(s >= 0 for s in span) and len(span) == target


# ---------------------------------------------------------------------------------------- noise and errors


def test_initial_tokens_noise_only_the_mask():
    lat, face = source()
    seq = add_frames(lat, 4, 2, face)
    noise = torch.randn(B, seq.num_frames * H * W, C)
    x1, t = seq.initial_tokens(noise)
    on = seq.mask > 0
    assert torch.equal(x1[on], noise[on])
    assert torch.equal(x1[~on], seq.tokens()[~on])
    assert torch.equal(t, seq.mask)


def test_bad_face_mask_shape():
    lat, face = source()
    with pytest.raises(ValueError, match="face_mask"):
        add_frames(lat, 0, 1, face[:, :-1])
