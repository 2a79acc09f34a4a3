"""The project's one audio path (data_prep.audio) against the ffmpeg command line, sample for sample.

Reference: ``ffmpeg -i <file> -vn -ac 1 -ar 16000 out.wav`` (16-bit PCM), read as ``x / 32768``.
Tolerance: 2 steps of 16 bits (2 / 32768 ≈ 6.1e-5) per sample, the same sample count. Our float output
differs from the CLI's by its rounding to 16 bits (half a step) plus any difference between the FFmpeg
libraries PyAV bundles and the system CLI; the √2 (stereo) and 3.4× (5.1) gain errors this guards
against are four orders of magnitude larger.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.audio import AUDIO_RATE, AudioDecodeError, decode_audio, resample_audio
from data_prep.decode import SourceDecoder
from data_prep.media import encode_wav

TOLERANCE = 2 / 32768


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg not installed (make setup installs it)")
    return exe


def run(ffmpeg: str, *args: str) -> None:
    subprocess.run([ffmpeg, "-v", "error", "-y", *args], check=True)


def ffmpeg_mono_16k(ffmpeg: str, source: Path, tmp: Path) -> np.ndarray:
    out = tmp / f"{source.stem}.ref.wav"
    run(ffmpeg, "-i", str(source), "-vn", "-ac", "1", "-ar", "16000", str(out))
    audio, sr = sf.read(out, dtype="int16")
    assert sr == 16000
    return audio.astype(np.float32) / 32768


def lavfi_inputs(sources: list[str]) -> list[str]:
    return [arg for src in sources for arg in ("-f", "lavfi", "-i", src)]


@pytest.fixture(scope="module")
def stereo_aac(ffmpeg, tmp_path_factory) -> Path:
    """44.1 kHz stereo AAC: a 440 Hz tone on the left, pink noise on the right (different content)."""
    path = tmp_path_factory.mktemp("audio") / "stereo.m4a"
    sources = ["sine=f=440:r=44100:d=2.5", "anoisesrc=c=pink:r=44100:d=2.5:seed=7:a=0.3"]
    run(ffmpeg, *lavfi_inputs(sources), "-filter_complex", "amerge=inputs=2", "-c:a", "aac", "-b:a", "192k", str(path))
    return path


@pytest.fixture(scope="module")
def surround_aac(ffmpeg, tmp_path_factory) -> Path:
    """48 kHz 5.1 AAC with a different signal on each of the six channels."""
    path = tmp_path_factory.mktemp("audio") / "surround.m4a"
    sources = [
        "sine=f=440:r=48000:d=2",
        "sine=f=660:r=48000:d=2",
        "sine=f=1000:r=48000:d=2",
        "sine=f=60:r=48000:d=2",
        "anoisesrc=c=pink:r=48000:d=2:seed=3:a=0.2",
        "sine=f=3000:r=48000:d=2",
    ]
    graph = "amerge=inputs=6,aformat=channel_layouts=5.1"
    run(ffmpeg, *lavfi_inputs(sources), "-filter_complex", graph, "-c:a", "aac", "-b:a", "384k", str(path))
    return path


def assert_matches(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    err = np.abs(ours - ref)
    assert err.max() <= TOLERANCE, f"max abs error {err.max():.3g} (at sample {err.argmax()}) > {TOLERANCE:.3g}"
    assert np.std(ours) / np.std(ref) == pytest.approx(1.0, abs=1e-3)  # no gain error


def test_stereo_downmix_is_ffmpegs_mean_of_channels(ffmpeg, stereo_aac, tmp_path):
    ref = ffmpeg_mono_16k(ffmpeg, stereo_aac, tmp_path)
    ours = decode_audio(stereo_aac)
    assert_matches(ours, ref)
    # And it is the mean of the two channels (each channel alone, through ffmpeg's resampler).
    sides = []
    for ch in ("c0", "c1"):
        out = tmp_path / f"{ch}.wav"
        run(ffmpeg, "-i", str(stereo_aac), "-af", f"pan=mono|c0={ch}", "-ar", "16000", "-c:a", "pcm_f32le", str(out))
        sides.append(sf.read(out, dtype="float32")[0])
    assert np.abs(sides[0] - sides[1]).max() > 0.3  # the channels really differ
    np.testing.assert_allclose(ours, (sides[0] + sides[1]) / 2, atol=1e-5)


def test_surround_downmix_matches_ffmpeg(ffmpeg, surround_aac, tmp_path):
    assert_matches(decode_audio(surround_aac), ffmpeg_mono_16k(ffmpeg, surround_aac, tmp_path))


def test_video_decoder_audio_matches_ffmpeg(ffmpeg, tmp_path):
    """data_prep's one-pass decoder (video and stereo audio demuxed together) gives ffmpeg's mono track."""
    video = tmp_path / "talk.mp4"
    sources = [
        "testsrc2=size=64x64:rate=30:d=3",
        "sine=f=300:r=48000:d=3",
        "anoisesrc=c=white:r=48000:d=3:seed=1:a=0.2",
    ]
    run(
        ffmpeg,
        *lavfi_inputs(sources),
        "-filter_complex",
        "[1:a][2:a]amerge=inputs=2[a]",
        "-map",
        "0:v",
        "-map",
        "[a]",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(video),
    )
    decoder = SourceDecoder(video)
    assert sum(1 for _ in decoder.frames()) == 90
    ref = ffmpeg_mono_16k(ffmpeg, video, tmp_path)
    n = min(ref.shape[0], decoder.audio.shape[0])
    assert abs(ref.shape[0] - decoder.audio.shape[0]) <= 16  # aligned to the first frame: at most 1 ms apart
    assert np.abs(decoder.audio[:n] - ref[:n]).max() <= TOLERANCE


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_array_resampling_matches_ffmpeg(ffmpeg, tmp_path, rate):
    t = np.arange(int(1.3 * rate)) / rate
    x = (0.4 * np.sin(2 * np.pi * 300 * t) + 0.05 * np.random.default_rng(rate).standard_normal(t.size)).astype(
        np.float32
    )
    src = tmp_path / "in.wav"
    sf.write(src, x, rate, subtype="FLOAT")
    ref = ffmpeg_mono_16k(ffmpeg, src, tmp_path)
    assert_matches(resample_audio(x, rate), ref)
    assert_matches(decode_audio(src), ref)


def test_resample_audio_same_rate_and_int16():
    x = np.array([0, 16384, -32768], np.int16)
    np.testing.assert_array_equal(resample_audio(x, AUDIO_RATE), [0.0, 0.5, -1.0])
    with pytest.raises(ValueError, match=r"mono \[S\]"):
        resample_audio(np.zeros((2, 10), np.float32), 16000)
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        resample_audio(np.zeros(10, np.float32), 0)


def test_stored_wav_reads_back_as_ffmpegs_pcm():
    x = np.array([0.0, 0.5, -1.0, 1.0, 0.123456, -0.7], np.float32)
    back = decode_audio(encode_wav(x, AUDIO_RATE))
    np.testing.assert_array_equal(back * 32768, np.clip(np.rint(x.astype(np.float64) * 32768), -32768, 32767))


def test_errors_name_the_file(tmp_path):
    silent = tmp_path / "silent.mp4"
    from data_prep.media import write_mp4

    write_mp4(silent, np.zeros((3, 16, 16, 3), np.uint8), 25.0)
    with pytest.raises(AudioDecodeError, match=r"silent\.mp4: has no audio stream"):
        decode_audio(silent)
    with pytest.raises(AudioDecodeError, match=r"<bytes>: cannot be opened as a media file"):
        decode_audio(b"not a media file" * 20)
    with pytest.raises(AudioDecodeError, match=r"missing\.wav: cannot be opened"):
        decode_audio(tmp_path / "missing.wav")
