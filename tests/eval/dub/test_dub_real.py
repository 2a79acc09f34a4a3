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


def test_a_20_second_1080x1920_dub_stays_under_4_gib(real_data_dir, stage2, smoke_base, tmp_path):
    # The whole 20 s recording with its own speech, in a fresh process that reports its own peak RSS: what grows
    # with length (decoded frames, crops, latents, paste masks) must stay bounded.
    import subprocess
    import sys

    out = tmp_path / "dub20.mp4"
    args = dub_overrides(stage2, smoke_base, real_data_dir / "demo2_video.mp4", real_data_dir / "demo2_audio.wav", out)
    args = [a for a in args if not a.startswith("sampler.num_steps=")] + ["sampler.num_steps=1"]
    code = (
        "import resource, sys\n"
        "from eval.dub.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    info = video_stream_info(out)
    assert info["frames"] == 496 and (info["width"], info["height"]) == (1080, 1920)  # the speech's 19.84 s
    peak_gib = int(done.stdout.split("maxrss_kb")[-1].split()[0]) / 2**20
    assert peak_gib < 4.0, f"peak RSS {peak_gib:.2f} GiB"
