"""Edit lists on the source timeline (:mod:`eval.sampler.edit_plan`): seconds mapped, several edits, errors."""

import pytest
import torch

from eval.sampler.edit_plan import Edit, EditError
from eval.sampler.editing import apply_edits
from tests.eval.edit_source import T, frame_m, source

# ---------------------------------------------------------------------------------------- seconds → latent


def test_apply_edits_maps_seconds_at_25_and_30_fps():
    lat, face = source()  # 12 latent frames = 89 video frames (3.56 s at 25 fps, 2.97 s at 30 fps)
    seq25 = apply_edits(lat, [Edit("add", 1.0, duration_s=1.0)], fps=25, face_mask=face)
    assert seq25.source_index.tolist()[3:8] == [3, -1, -1, -1, 4]
    seq30 = apply_edits(lat, [Edit("add", 1.0, duration_s=1.0)], fps=30, face_mask=face)
    assert seq30.source_index.tolist()[3:9] == [3, -1, -1, -1, -1, 4]
    rm = apply_edits(lat, [Edit("remove", 1.0, end_s=2.0)], fps=30, face_mask=face)
    assert rm.source_index.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]


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
