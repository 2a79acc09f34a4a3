"""Visual dialog editing on latent sequences: lengths, masks, RoPE, retime spreading, time mapping, errors."""

import pytest
import torch

from eval.sampler.edit_plan import Edit, EditError
from eval.sampler.edit_timeline import (
    audio_duration_s,
    audio_samples,
    duration_to_latent_frames,
    latent_frame_spans_s,
    latent_span,
    latent_to_video_frames,
    seconds_to_latent_boundary,
    seconds_to_video_frame,
    spread_positions,
    video_frame_to_latent,
)
from eval.sampler.editing import add_frames, apply_edits, remove_frames, rerender_frames, retime_frames
from trainer.model.masks import face_token_mask, latent_frame_groups
from trainer.model.sequence import video_coords

CPU = torch.device("cpu")
B, C, T, H, W = 2, 3, 12, 4, 5
FACE = (2, 1, 4, 4)  # lower-face token box (row0, col0, row1, col1)


def source():
    # Each latent frame is filled with its own index so moved content is easy to trace.
    lat = torch.arange(T, dtype=torch.float32)[None, None, :, None, None].expand(B, C, T, H, W).clone()
    lat = lat + 100 * torch.arange(B, dtype=torch.float32)[:, None, None, None, None]
    face = torch.zeros(B, T, H, W, dtype=torch.bool)
    face[:, :, FACE[0] : FACE[2], FACE[1] : FACE[3]] = True
    return lat, face


def frame_m(seq):
    """Per-frame mask summary: 'F' full, 'f' exactly the face box, '0' nothing, '?' anything else."""
    m = seq.mask_grid()
    face = torch.zeros(H, W, dtype=torch.bool)
    face[FACE[0] : FACE[2], FACE[1] : FACE[3]] = True
    out = ""
    for i in range(seq.num_frames):
        g = m[:, i] > 0
        if g.all():
            out += "F"
        elif (g == face).all():
            out += "f"
        elif not g.any():
            out += "0"
        else:
            out += "?"
    return out


def assert_content(seq, lat):
    for i, s in enumerate(seq.source_index.tolist()):
        if s >= 0:
            assert torch.equal(seq.latents[:, :, i], lat[:, :, s])
        else:
            assert not seq.latents[:, :, i].any()


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


def test_spread_positions_even_and_exact():
    for length in range(1, 40):
        for count in range(0, length + 1):
            pos = spread_positions(count, length)
            assert len(pos) == count == len(set(pos))
            assert all(0 <= p < length for p in pos)
            gaps = [b - a for a, b in zip(pos, pos[1:])]
            if gaps:
                assert max(gaps) - min(gaps) <= 1
    assert spread_positions(2, 10) == [2, 7]
    assert spread_positions(3, 9) == [1, 4, 7]
    with pytest.raises(ValueError):
        spread_positions(4, 3)


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


# ------------------------------------------------------------------------------------------ seconds → latent


def test_video_frame_to_latent_matches_latent_frame_groups():
    for n, group in enumerate(latent_frame_groups(8 * 20 + 1)):
        for f in group:
            assert video_frame_to_latent(f) == n


@pytest.mark.parametrize(
    ("fps", "t", "frame", "latent"),
    [
        (25, 0.0, 0, 0),
        (25, 0.04, 1, 1),  # first frame of latent 1
        (25, 0.32, 8, 1),  # last frame of latent 1: boundary snaps back to its start
        (25, 0.36, 9, 2),
        (25, 1.0, 25, 4),  # latent 4 holds video frames 25..32
        (25, 0.98, 25, 4),  # 24.5 rounds half up
        (30, 1.0, 30, 4),
        (30, 0.3, 9, 2),  # 8.999999999999998 must not fall to frame 8
        (30, 2.0, 60, 8),
        (30, 2.1, 63, 8),
    ],
)
def test_seconds_to_latent_boundary(fps, t, frame, latent):
    assert seconds_to_video_frame(t, fps) == frame
    assert seconds_to_latent_boundary(t, fps) == latent


def test_durations_and_spans_at_25_and_30_fps():
    assert duration_to_latent_frames(1.0, 25) == 3  # 3.125
    assert duration_to_latent_frames(1.0, 30) == 4  # 3.75
    assert duration_to_latent_frames(0.9, 25) == 3  # 2.8125, the "+0.9 s" of Fig. 5
    assert duration_to_latent_frames(0.16, 25) == 1  # 0.5 rounds up
    assert duration_to_latent_frames(0.15, 25) == 0
    assert latent_span(1.0, 2.0, 25) == (4, 7)  # frames 25..49 → latents 4,5,6
    assert latent_span(1.0, 2.0, 30) == (4, 8)  # frames 30..59 → boundaries 4 and 8
    assert latent_span(1.0, 2.0, 25, cover=True) == (4, 8)  # last frame 49 is the first of latent 7
    assert latent_span(1.0, 1.2, 30, cover=True) == (4, 6)  # frames 30..35 touch latents 4 (25..32) and 5
    assert latent_span(1.0, 1.2, 30) == (4, 5)  # snapped: ⌈30/8⌉ = 4, ⌈36/8⌉ = 5
    assert latent_span(1.0, 1.1, 25) == (4, 4)  # too short for a timeline edit


def test_apply_edits_maps_seconds_at_25_and_30_fps():
    lat, face = source()  # 12 latent frames = 89 video frames (3.56 s at 25 fps, 2.97 s at 30 fps)
    seq25 = apply_edits(lat, [Edit("add", 1.0, duration_s=1.0)], fps=25, face_mask=face)
    assert seq25.source_index.tolist()[3:8] == [3, -1, -1, -1, 4]
    seq30 = apply_edits(lat, [Edit("add", 1.0, duration_s=1.0)], fps=30, face_mask=face)
    assert seq30.source_index.tolist()[3:9] == [3, -1, -1, -1, -1, 4]
    rm = apply_edits(lat, [Edit("remove", 1.0, end_s=2.0)], fps=30, face_mask=face)
    assert rm.source_index.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]


def test_video_and_audio_helpers():
    assert latent_to_video_frames(1) == 1
    assert latent_to_video_frames(17) == 129
    assert audio_duration_s(4, 25) == pytest.approx(25 / 25)
    assert audio_samples(26, 25, 16000) == 201 * 640
    assert audio_samples(2, 30, 16000) == 4800  # 9 frames / 30 fps = 0.3 s
    spans = latent_frame_spans_s(3, 25)
    expected = torch.tensor([[0, 1], [1, 9], [9, 17]], dtype=torch.float64) / 25
    torch.testing.assert_close(spans, expected)
    lat, face = source()
    seq = add_frames(lat, 2, 5, face)
    assert audio_duration_s(seq.num_frames, 25) == pytest.approx(seq.video_frames / 25)


# ------------------------------------------------------------------------------------------- several edits


def test_several_edits_in_any_order_give_one_timeline():
    lat, face = source()
    fps = 25.0
    edits = [
        Edit("remove", 2.0, end_s=2.4),  # frames 50..59 → latents [7, 8)
        Edit("add", 0.36, duration_s=0.64),  # before latent 2, 2 frames
        Edit("rerender", 2.6, end_s=3.0, region=(0, 0, 1, 1)),  # frames 65..74 → latents 9..10
        Edit("retime", 0.68, end_s=1.64, factor=1.5),  # frames 17..41 → latents [3, 6), 3 → 5 (4.5 half up)
    ]
    a = apply_edits(lat, edits, fps, face_mask=face)
    b = apply_edits(lat, list(reversed(edits)), fps, face_mask=face)
    assert torch.equal(a.source_index, b.source_index) and torch.equal(a.mask, b.mask)
    src = a.source_index.tolist()
    assert src == [0, 1, -1, -1, 2, 3, -1, 4, -1, 5, 6, 8, 9, 10, 11]
    marks = frame_m(a)
    assert marks[src.index(6)] == "F" and marks[src.index(8)] == "F"  # neighbours of the removal
    m = a.mask_grid()
    for s in (9, 10):
        assert (m[:, src.index(s), 0, 0] == 1).all()
    assert (m[:, src.index(11), 0, 0] == 0).all()
    assert a.num_frames == T + 2 + 2 - 1


def test_replacement_renders_both_boundaries_of_the_gap():
    lat, face = source()
    # Remove latents [4, 7) and add 2 frames at the same place: a word replaced by another.
    edits = [Edit("remove", 1.0, end_s=1.96), Edit("add", 1.0, duration_s=0.64)]
    seq = apply_edits(lat, edits, 25.0, face_mask=face)
    assert seq.source_index.tolist() == [0, 1, 2, 3, -1, -1, 7, 8, 9, 10, 11]
    assert frame_m(seq) == "fffFFFFffff"


def test_initial_tokens_noise_only_the_mask():
    lat, face = source()
    seq = add_frames(lat, 4, 2, face)
    noise = torch.randn(B, seq.num_frames * H * W, C)
    x1, t = seq.initial_tokens(noise)
    on = seq.mask > 0
    assert torch.equal(x1[on], noise[on])
    assert torch.equal(x1[~on], seq.tokens()[~on])
    assert torch.equal(t, seq.mask)


# -------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ([Edit("splice", 0.0, end_s=1.0)], r"edit 0 \(splice .*kind 'splice'"),
        ([Edit("remove", 1.0, end_s=1.1)], r"edit 0 \(remove 1.0–1.1 s\): span 1.0–1.1 s covers 0 latent frames"),
        ([Edit("remove", 1.0, end_s=0.5)], r"end_s 0.5 must be after start_s 1.0"),
        ([Edit("add", 1.0, duration_s=0.1)], r"duration_s 0.1 rounds to 0 latent frames"),
        ([Edit("add", 1.0)], r"duration_s None must be > 0"),
        ([Edit("remove", 3.0, end_s=9.0)], r"end_s 9.0 is past the end of the 3.560 s clip"),
        ([Edit("add", 5.0, duration_s=1.0)], r"start_s 5.0 is past the end"),
        ([Edit("remove", -1.0, end_s=1.0)], r"start_s -1.0 must be a finite time"),
        ([Edit("retime", 1.0, end_s=2.0)], r"exactly one of factor and duration_s"),
        ([Edit("retime", 1.0, end_s=2.0, factor=1.01)], r"changes the span by 0 latent frames"),
        ([Edit("retime", 1.0, end_s=2.0, factor=0.1)], r"shortens 3 latent frames to 0"),
        ([Edit("rerender", 1.0, end_s=2.0, region=(0, 0, 9, 1))], r"region \(0, 0, 9, 1\) is empty or outside"),
        ([Edit("rerender", 1.0, end_s=2.0, region=(2, 2, 2, 3))], r"region \(2, 2, 2, 3\)"),
        ([Edit("add", 1.0, duration_s=1.0, region=(0, 0, 1, 1))], r"start_s and duration_s only"),
        (
            [Edit("remove", 0.5, end_s=1.5), Edit("rerender", 1.2, end_s=2.0)],
            r"edit 0 \(remove 0.5–1.5 s\) \(latent frames 2–4\) overlaps edit 1 \(rerender 1.2–2.0 s\)",
        ),
        (
            [Edit("retime", 0.5, end_s=2.0, factor=2.0), Edit("add", 1.0, duration_s=0.5)],
            r"edit 1 \(add 0.5 s at 1.0 s\) \(before latent frame 4\) falls inside edit 0",
        ),
        ([Edit("remove", 0.0, end_s=3.56)], r"remove every latent frame"),
    ],
)
def test_bad_edits_name_the_edit_and_value(edits, message):
    lat, face = source()
    with pytest.raises(EditError, match=message):
        apply_edits(lat, edits, fps=25.0, face_mask=face)


def test_retime_by_duration_matches_the_requested_change():
    lat, face = source()
    # Fig. 6: a segment lengthened by +1.1 s → round_half_up(1.1·25/8) = 3 more latent frames.
    seq = apply_edits(lat, [Edit("retime", 0.36, end_s=2.0, duration_s=2.0 - 0.36 + 1.1)], 25.0, face_mask=face)
    assert seq.num_frames == T + 3
    seq = apply_edits(lat, [Edit("retime", 0.36, end_s=2.0, duration_s=2.0 - 0.36 - 0.5)], 25.0, face_mask=face)
    assert seq.num_frames == T - 2  # -0.5 s → 1.5625 → 2 frames fewer


def test_adding_at_a_span_boundary_is_allowed():
    lat, face = source()
    edits = [Edit("rerender", 1.0, end_s=1.9), Edit("add", 1.0, duration_s=0.32)]
    seq = apply_edits(lat, edits, 25.0, face_mask=face)
    assert seq.source_index.tolist()[3:6] == [3, -1, 4]


def test_bad_face_mask_shape():
    lat, face = source()
    with pytest.raises(ValueError, match="face_mask"):
        add_frames(lat, 0, 1, face[:, :-1])
