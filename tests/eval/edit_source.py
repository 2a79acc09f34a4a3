"""The source latents the editing tests edit, and readings of an edited sequence (mask summary, content)."""

import torch

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
