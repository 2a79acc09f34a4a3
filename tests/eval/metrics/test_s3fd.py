"""S3FD: the official sfd_face.pth layout (strict loading), the heads, anchors, decoding and the detection chain."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from eval.metrics import s3fd

# The official layer shapes (joonson/syncnet_python, detectors/s3fd/nets.py), written out independently of
# eval.metrics.s3fd: name -> (out, in, kernel) for convolutions, (channels,) for the L2Norm scales.
VGG_CONVS = {
    0: (64, 3, 3), 2: (64, 64, 3), 5: (128, 64, 3), 7: (128, 128, 3), 10: (256, 128, 3), 12: (256, 256, 3),
    14: (256, 256, 3), 17: (512, 256, 3), 19: (512, 512, 3), 21: (512, 512, 3), 24: (512, 512, 3),
    26: (512, 512, 3), 28: (512, 512, 3), 31: (1024, 512, 3), 33: (1024, 1024, 1),
}  # fmt: skip
EXTRAS = [(256, 1024, 1), (512, 256, 3), (128, 512, 1), (256, 128, 3)]
SOURCES = [256, 512, 512, 1024, 512, 256]


def official_layout() -> dict[str, tuple[int, ...]]:
    table: dict[str, tuple[int, ...]] = {}

    def conv(name, out, cin, k):
        table[f"{name}.weight"], table[f"{name}.bias"] = (out, cin, k, k), (out,)

    for i, shape in VGG_CONVS.items():
        conv(f"vgg.{i}", *shape)
    for name, c in (("L2Norm3_3", 256), ("L2Norm4_3", 512), ("L2Norm5_3", 512)):
        table[f"{name}.weight"] = (c,)
    for i, shape in enumerate(EXTRAS):
        conv(f"extras.{i}", *shape)
    for i, c in enumerate(SOURCES):
        conv(f"loc.{i}", 4, c, 3)
    for i, c in enumerate(SOURCES):
        conv(f"conf.{i}", 4 if i == 0 else 2, c, 3)
    return table


def seeded_net(seed: int = 0) -> s3fd.S3FDNet:
    torch.manual_seed(seed)
    net = s3fd.S3FDNet()
    with torch.no_grad():
        for norm in (net.L2Norm3_3, net.L2Norm4_3, net.L2Norm5_3):
            norm.weight.uniform_(2, 12)
    return net.eval()


def test_state_dict_is_the_official_layout():
    sd = s3fd.S3FDNet().state_dict()
    expected = official_layout()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert list(sd) == list(expected)  # the official registration order: vgg, L2Norm*, extras, loc, conf
    # The L2Norm scales start at the official 10, 8, 5.
    net = s3fd.S3FDNet()
    assert {float(n.weight.detach()[0]) for n in (net.L2Norm3_3, net.L2Norm4_3, net.L2Norm5_3)} == {10.0, 8.0, 5.0}


def test_loads_official_layout_file_strictly(tmp_path):
    net = seeded_net(1)
    path = tmp_path / "sfd_face.pth"
    torch.save(net.state_dict(), path)
    detector = s3fd.load_s3fd(path)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(3)) * 50
    with torch.no_grad():
        want, got = net(x), detector.net(x)
    for a, b in zip(want[:2], got[:2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert want[2] == got[2]


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sfd_face\.pth.*TALKDIT_S3FD"):
        s3fd.load_s3fd(tmp_path / "sfd_face.pth")
    with pytest.raises(FileNotFoundError, match="no sfd_face.pth configured.*MediaPipe"):
        s3fd.load_s3fd(None)
    state = s3fd.S3FDNet().state_dict()
    state.pop("conf.5.bias")
    state["loc.0.weight"] = torch.zeros(4, 256, 5, 5)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    named = r"shape mismatches \(first: loc\.0\.weight.*missing keys \(first: conf\.5\.bias"
    with pytest.raises(ValueError, match=named):
        s3fd.load_s3fd(bad)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a state dict readable"):
        s3fd.load_s3fd(tmp_path / "junk.pth")


def test_heads_and_anchors_cover_strides_4_to_128():
    net = seeded_net()
    with torch.no_grad():
        loc, scores, maps = net(torch.randn(2, 3, 128, 160))
    assert maps == [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    num = sum(h * w for h, w in maps)
    assert loc.shape == (2, num, 4) and scores.shape == (2, num, 2)
    torch.testing.assert_close(scores.sum(-1), torch.ones(2, num))
    priors = s3fd.prior_boxes((128, 160), maps)
    assert priors.shape == (num, 4)
    # Source 0, row 1, column 2: centre ((2 + ½)·4, (1 + ½)·4) px, 16 px square.
    torch.testing.assert_close(priors[1 * 40 + 2], torch.tensor([10 / 160, 6 / 128, 16 / 160, 16 / 128]))
    # The last anchor: source 5 (stride 128, 512 px), row 0, column 1.
    torch.testing.assert_close(priors[-1], torch.tensor([192 / 160, 64 / 128, 512 / 160, 512 / 128]))


def test_decode_applies_the_variances():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    loc = torch.tensor([[1.0, -2.0, float(np.log(2)) / 0.2, 0.0]])
    # centre (0.5 + 1·0.1·0.2, 0.5 − 2·0.1·0.4) = (0.52, 0.42); size (0.2·2, 0.4) = (0.4, 0.4)
    torch.testing.assert_close(s3fd.decode_boxes(loc, prior), torch.tensor([[0.32, 0.22, 0.72, 0.62]]))


def test_detections_threshold_nms_and_order():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.51, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]])
    face = torch.tensor([0.6, 0.9, 0.04, 0.7])
    scores = torch.stack([1 - face, face], -1)[None]
    out = s3fd.detections(torch.zeros(1, 4, 4), scores, priors, top_k=3)
    # Prior 0 overlaps prior 1 (IoU 0.9) and loses to it; prior 2 is below 0.05; best first.
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.9, 0.7, 0.0]))
    torch.testing.assert_close(out[0, 0, 1:], torch.tensor([0.41, 0.4, 0.61, 0.6]))


def forced_detector(face_logit: float) -> s3fd.S3FD:
    """A network whose heads ignore the image: zero box offsets, the same face score for every anchor."""
    net = seeded_net()
    with torch.no_grad():
        for head in itertools.chain(net.loc, net.conf):
            head.weight.zero_()
            head.bias.zero_()
        net.conf[0].bias[3] = face_logit
        for head in net.conf[1:]:
            head.bias[1] = face_logit
    return s3fd.S3FD(net)


def test_detect_faces_maps_anchors_back_to_source_pixels():
    image = np.random.default_rng(0).integers(0, 255, (256, 320, 3), dtype=np.uint8)
    boxes = forced_detector(5.0).detect_faces(image, conf_th=0.9, scales=[0.5])
    assert boxes.shape[1] == 5 and len(boxes) > 0
    np.testing.assert_allclose(boxes[:, 4], 1 / (1 + np.exp(-5.0)), rtol=1e-5)
    # Each box is an anchor of the 128x160 scaled image, in pixels of the 256x320 source (×2).
    side = boxes[:, 2] - boxes[:, 0]
    np.testing.assert_allclose(side, boxes[:, 3] - boxes[:, 1], atol=1e-3)
    for (x0, y0, x1, y1, _), w in zip(boxes, side):
        step = s3fd.STEPS[s3fd.MIN_SIZES.index(round(w / 2))] * 2
        for centre in ((x0 + x1) / 2, (y0 + y1) / 2):
            assert (centre / step - 0.5) == pytest.approx(round(centre / step - 0.5), abs=1e-3)
    # Across-scale NMS at IoU 0.1: no two kept boxes overlap more than that.
    t = torch.from_numpy(boxes[:, :4])
    from torchvision.ops import box_iou

    iou = box_iou(t, t).fill_diagonal_(0)
    assert float(iou.max()) <= 0.1 + 1e-6
    assert forced_detector(-5.0).detect_faces(image, conf_th=0.9, scales=[0.5]).shape == (0, 5)
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        forced_detector(5.0).detect_faces(image.astype(np.float32))
