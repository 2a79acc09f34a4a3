"""Token layout, RoPE coordinates (parity with diffusers' LTX pipeline) and face masks from boxes."""

import pytest
import torch
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline

from trainer.model.masks import face_token_mask, group_boxes, latent_frame_groups
from trainer.model.sequence import (
    batch_token_boxes,
    identity_reference_index,
    patchify,
    reference_tokens,
    unpatchify,
    video_coords,
)

CPU = torch.device("cpu")


def test_patchify_round_trip_and_order():
    x = torch.randn(2, 4, 3, 2, 5)
    tok = patchify(x)
    assert tok.shape == (2, 30, 4)
    # Token (t, r, c) sits at index t*H*W + r*W + c.
    assert torch.equal(tok[1, 1 * 10 + 1 * 5 + 3], x[1, :, 1, 1, 3])
    assert torch.equal(unpatchify(tok, 3, 2, 5), x)


def test_video_coords_match_diffusers_ltx_condition_pipeline():
    frames, h, w = 4, 3, 5
    ids = LTXConditionPipeline._prepare_video_ids(2, frames, h, w, patch_size=1, patch_size_t=1, device=CPU)
    scaled = LTXConditionPipeline._scale_video_ids(ids, scale_factor=32, scale_factor_t=8, frame_index=0, device=CPU)
    fps = torch.tensor([25.0, 30.0])
    expected = scaled.float()
    expected[:, 0] = expected[:, 0] / fps[:, None]
    ours = video_coords(2, frames, h, w, fps, CPU)
    torch.testing.assert_close(ours, expected)
    # Per-sample fps reaches the temporal coordinate: latent frame 2 starts at video frame 9.
    assert ours[0, 0, 2 * h * w].item() == pytest.approx(9 / 25)
    assert ours[1, 0, 2 * h * w].item() == pytest.approx(9 / 30)


def test_reference_tokens_use_sentinel_indices_and_their_own_positions():
    lat = torch.randn(2, 4, 3, 6, 7)  # [B, C, R, H, W]
    boxes = torch.tensor([[1, 2, 3, 4], [3, 4, 5, 6]])
    ref = reference_tokens(lat, boxes, identity_reference_index(3), torch.tensor([25.0, 50.0]))
    assert ref.tokens.shape == (2, 3 * 2 * 2, 4)
    assert torch.equal(ref.tokens[1, 0], lat[1, :, 0, 3, 4])
    t = ref.coords[:, 0].reshape(2, 3, 4)
    assert torch.allclose(t[0, :, 0], torch.tensor([-8, -16, -24]) / 25.0)
    assert torch.allclose(t[1, :, 0], torch.tensor([-8, -16, -24]) / 50.0)
    assert ref.coords[1, 1, 0].item() == 3 * 32 and ref.coords[1, 2, 0].item() == 4 * 32


def test_batch_token_boxes_share_the_largest_size_inside_the_grid():
    boxes = torch.tensor([[1, 1, 2, 3], [4, 5, 7, 8]])
    out = batch_token_boxes(boxes, grid_h=6, grid_w=8)
    sizes = out[:, 2:] - out[:, :2]
    assert torch.equal(sizes, torch.tensor([[3, 3], [3, 3]]))
    assert out[:, 2].max() <= 6 and out[:, 3].max() <= 8 and out.min() >= 0


def test_latent_frame_groups():
    groups = latent_frame_groups(17)
    assert [list(g) for g in groups] == [[0], list(range(1, 9)), list(range(9, 17))]


def test_face_mask_matches_hand_drawn_boxes():
    # 17 frames, 128x160 pixels -> 3 latent frames of 4x5 tokens.
    boxes = torch.full((1, 17, 4), float("nan"))
    boxes[0, 0] = torch.tensor([40.0, 33.0, 70.0, 60.0])  # x 40..70 -> cols 1..2; y 33..60 -> rows 1..1
    boxes[0, 1:9] = torch.tensor([64.0, 64.0, 96.0, 96.0])  # exactly token (2, 2)
    boxes[0, 5] = torch.tensor([64.0, 64.0, 130.0, 96.0])  # widens group 1 to cols 2..4
    # group 2 has no face at all: empty mask
    mask = face_token_mask(boxes, 4, 5)
    assert mask.shape == (1, 3, 4, 5)
    expected0 = torch.zeros(4, 5, dtype=torch.bool)
    expected0[1, 1:3] = True
    expected1 = torch.zeros(4, 5, dtype=torch.bool)
    expected1[2, 2:5] = True
    assert torch.equal(mask[0, 0], expected0)
    assert torch.equal(mask[0, 1], expected1)
    assert not mask[0, 2].any()
    g = group_boxes(boxes)
    assert torch.isnan(g[0, 2]).all()


def test_adaptive_boxes_pad_then_smooth_forward_in_time():
    from trainer.model.masks import adaptive_boxes

    boxes = torch.tensor([[[10.0, 20.0, 30.0, 60.0], [14.0, 20.0, 34.0, 60.0], [float("nan")] * 4]])
    out = adaptive_boxes(boxes, padding=0.1, alpha=0.75)
    padded0 = torch.tensor([8.0, 16.0, 32.0, 64.0])  # w=20, h=40: 2 and 4 px per side
    padded1 = torch.tensor([12.0, 16.0, 36.0, 64.0])
    torch.testing.assert_close(out[0, 0], 0.75 * padded0 + 0.25 * padded1)  # x'_t = a x_t + (1 - a) x_(t+1)
    torch.testing.assert_close(out[0, 1], padded1)  # the next box is missing: no NaN spreads backwards
    assert torch.isnan(out[0, 2]).all()
