"""Dubbing the real recordings in ../shared/data/real (skipped when absent) with the other recording's speech.

Only the first 2 s are dubbed (``duration=2``: the dub decodes no further than the speech it keeps), with the smoke
run's tiny model: what is checked is the path from raw files to the output, not the model's lip sync.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from tests.eval.dub.conftest import dub_overrides
from tests.eval.dub.media import audio_correlation, psnr_outside_windows, video_stream_info
from tests.eval.dub.test_dub import run_dub

pytestmark = [pytest.mark.real_data, pytest.mark.slow]
SECONDS = 2.0
DRIVES = {"demo1_video.mp4": "demo2_audio.wav", "demo2_video.mp4": "demo1_audio.wav"}


@pytest.mark.parametrize("video", sorted(DRIVES))
def test_real_recording_dub_has_the_speech_the_source_geometry_and_its_pixels(
    video, real_data_dir, stage2, smoke_base, tmp_path
):
    source = real_data_dir / video
    speech = real_data_dir / DRIVES[video]
    out = tmp_path / "dub.mp4"
    result = run_dub(dub_overrides(stage2, smoke_base, source, speech, out, "size=[128,128]", f"duration={SECONDS}"))
    src, info = video_stream_info(source), video_stream_info(out)
    assert (info["width"], info["height"], info["fps"], info["rotation"]) == (
        src["width"],
        src["height"],
        src["fps"],
        src["rotation"],
    )
    assert (info["width"], info["height"], info["fps"]) == (1080, 1920, Fraction(25))
    assert not result.looped and info["frames"] == result.num_frames == round(SECONDS * 25)
    assert info["duration"] == pytest.approx(SECONDS, abs=0.02)
    assert info["audio_duration"] == pytest.approx(SECONDS, abs=1e-3)
    assert audio_correlation(out, speech) >= 0.99
    # The crop holds the face (a few hundred pixels of a 1080-wide frame), not the frame.
    widths = result.windows[:, 2] - result.windows[:, 0]
    assert widths.min() > 150 and widths.max() < 900
    assert psnr_outside_windows(out, source, result.source_frames, result.windows) >= 40.0
