"""The driving audio of an edited clip follows the edit's frame mapping; inserted frames are silent."""

import numpy as np
import torch

from eval.sampler.edit_audio import edited_track, source_video_frames
from eval.sampler.edit_plan import Edit
from eval.sampler.editing import apply_edits


def test_insertion_and_removal_map_frames_and_audio():
    latents = torch.zeros(1, 2, 4, 1, 1)  # 25 video frames at 25 fps
    added = apply_edits(latents, [Edit("add", start_s=0.36, duration_s=0.32)], 25.0)  # one latent frame at 2
    frames = source_video_frames(added.source_index)
    assert len(frames) == added.video_frames == 33
    assert frames[:9] == list(range(9)) and frames[9:17] == [None] * 8 and frames[17:] == list(range(9, 25))
    sr = 100  # 4 samples per frame
    audio = np.arange(1, 25 * 4 + 1, dtype=np.float32)
    out = edited_track(audio, frames, sr, 25.0)
    assert out.shape == (33 * 4,)
    np.testing.assert_array_equal(out[: 9 * 4], audio[: 9 * 4])
    assert not out[9 * 4 : 17 * 4].any()  # silence where frames were inserted
    np.testing.assert_array_equal(out[17 * 4 :], audio[9 * 4 :])
    feats = np.arange(50, dtype=np.float32).reshape(50, 1, 1)  # 50 Hz features of the 1-s clip
    assert edited_track(feats, frames, 50, 25.0).shape == (66, 1, 1)

    removed = apply_edits(latents, [Edit("remove", start_s=0.36, end_s=0.68)], 25.0)
    frames = source_video_frames(removed.source_index)
    assert len(frames) == 17 and frames == list(range(9)) + list(range(17, 25))
    np.testing.assert_array_equal(edited_track(audio, frames, sr, 25.0), np.r_[audio[:36], audio[68:]])
