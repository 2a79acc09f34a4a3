"""Fixtures of the dub tests: a short synthetic talking-head video, other speech, and dub options for the
smoke run's exports (``tests/conftest.py``: ``stage2`` and ``smoke_base``)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from data_prep.media import write_mp4
from data_prep.synthetic.clips import generate_clip

FPS = 25.0
SIDE = 192


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory):
    """A 1.6 s synthetic talking head (192 px, 25 fps, its own speech muxed) and its clip."""
    clip = generate_clip(3, fps=FPS, num_frames=40, width=SIDE, height=SIDE, zoom=1.5)
    path = tmp_path_factory.mktemp("dub_video") / "person.mp4"
    write_mp4(path, clip.frames, FPS, crf=12, audio=clip.audio, sample_rate=clip.sample_rate)
    return path, clip


@pytest.fixture(scope="session")
def other_speech(tmp_path_factory):
    """2.2 s of another synthetic person's speech as a 16 kHz wav (longer than the video: it ping-pongs)."""
    clip = generate_clip(11, fps=FPS, num_frames=55, width=64, height=64)
    path = tmp_path_factory.mktemp("dub_speech") / "speech.wav"
    sf.write(path, clip.audio.astype(np.float32), clip.sample_rate)
    return path, clip.audio


def dub_overrides(stage2, smoke_base, video, audio, output, *extra: str) -> list[str]:
    """Command-line overrides of a cheap dub with the smoke run's stage-2 export (64 px crop, 2 Euler steps)."""
    _, export_dir, _, _ = stage2
    return [
        f"video={video}",
        f"audio={audio}",
        f"weights={export_dir}",
        f"base={smoke_base}",
        f"output={output}",
        "size=[64,64]",
        "sampler.num_steps=2",
        "preset=ultrafast",
        *extra,
    ]
