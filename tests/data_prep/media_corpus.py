"""A corpus of malformed and unusual media files, generated for the data_prep tests.

Valid files carry a synthetic talking head so that, once their quirk is handled, they pass every
filter; broken ones must each get a specific ledger reason.
"""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from data_prep.media import write_mp4
from data_prep.synthetic.clips import generate_clip

SIZE = 256
FRAMES = 125  # 5 s at 25 fps: one 121-frame clip
BITRATE_CRF = 12  # high quality keeps the bitrate meaningful


def _clip(seed: int):
    return generate_clip(seed, fps=25.0, num_frames=FRAMES, width=SIZE, height=SIZE)


def _encode(
    path: Path,
    frames: np.ndarray,
    pts: list[int],
    time_base: Fraction,
    audio=None,
    audio_rate=16000,
    layout="mono",
    container_options=None,
) -> None:
    with av.open(str(path), "w", format="mp4", options=container_options or {}) as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.time_base = time_base
        v.codec_context.time_base = time_base  # keep irregular timestamps (VFR) through the encoder
        a = None
        if audio is not None:
            a = c.add_stream("aac", rate=audio_rate, layout=layout)
        for frame, p in zip(frames, pts):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = p, time_base
            c.mux(v.encode(vf))
        c.mux(v.encode(None))
        if a is not None:
            channels = audio.shape[0]
            for start in range(0, audio.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(audio[:, start : start + 1024]), format="fltp", layout=layout
                )
                af.sample_rate, af.pts = audio_rate, start
                c.mux(a.encode(af))
            c.mux(a.encode(None))
            assert channels == a.channels


def resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear resampling (test inputs only)."""
    n = round(len(audio) * dst / src)
    return np.interp(np.arange(n) * src / dst, np.arange(len(audio)), audio).astype(np.float32)


def build(out: Path) -> dict[str, str]:
    """Write the corpus into ``out``; returns file name -> expected outcome (reason code or "kept")."""
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    tb = Fraction(1, 25)

    def good(name: str, seed: int) -> Path:
        c = _clip(seed)
        write_mp4(out / name, c.frames, 25.0, crf=BITRATE_CRF, audio=c.audio, sample_rate=16000)
        expected[name] = "kept"
        return out / name

    base = good("good.mp4", 1)
    good("vidéo parlée 01.mp4", 2)
    good("名前 テスト.mp4", 3)

    (out / "empty.mp4").write_bytes(b"")
    expected["empty.mp4"] = "empty_file"
    (out / "not_media.mp4").write_text("this is a text file named like a video\n" * 50)
    expected["not_media.mp4"] = "not_media"

    c = _clip(4)
    _encode(
        out / "faststart.tmp.mp4",
        c.frames,
        list(range(FRAMES)),
        tb,
        audio=c.audio[None],
        audio_rate=16000,
        container_options={"movflags": "faststart"},
    )
    data = (out / "faststart.tmp.mp4").read_bytes()
    (out / "faststart.tmp.mp4").unlink()
    (out / "truncated.mp4").write_bytes(data[: len(data) // 2])
    expected["truncated.mp4"] = "truncated"

    data = base.read_bytes()  # moov at the end (no faststart): cutting the tail loses it
    (out / "moov_missing.mp4").write_bytes(data[: int(len(data) * 0.9)])
    expected["moov_missing.mp4"] = "not_media"

    c = _clip(5)
    _encode(out / "no_audio.mp4", c.frames, list(range(FRAMES)), tb)
    expected["no_audio.mp4"] = "no_audio_stream"

    with av.open(str(out / "no_video.mp4"), "w", format="mp4") as cont:
        a = cont.add_stream("aac", rate=16000, layout="mono")
        for start in range(0, len(c.audio), 1024):
            af = av.AudioFrame.from_ndarray(c.audio[None, start : start + 1024].copy(), format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, start
            cont.mux(a.encode(af))
        cont.mux(a.encode(None))
    expected["no_video.mp4"] = "no_video_stream"

    write_mp4(out / "one_frame.mp4", c.frames[:1], 25.0, audio=c.audio[:640], sample_rate=16000)
    expected["one_frame.mp4"] = "too_few_frames"

    c = _clip(6)
    # Variable frame rate: frame durations alternate 30 and 50 ms (average 25 fps), millisecond clock.
    ms = np.cumsum([0] + [30 if i % 2 else 50 for i in range(FRAMES - 1)]).tolist()
    _encode(out / "vfr.mp4", c.frames, ms, Fraction(1, 1000), audio=c.audio[None], audio_rate=16000)
    expected["vfr.mp4"] = "kept"

    c = _clip(7)
    _encode(
        out / "audio_8k.mp4",
        c.frames,
        list(range(FRAMES)),
        tb,
        audio=resample(c.audio, 16000, 8000)[None],
        audio_rate=8000,
    )
    expected["audio_8k.mp4"] = "kept"

    c = _clip(8)
    a48 = resample(c.audio, 16000, 48000)
    surround = np.stack([a48, a48, a48 * 0.5, a48 * 0.1, a48 * 0.3, a48 * 0.3])
    _encode(out / "audio_51.mp4", c.frames, list(range(FRAMES)), tb, audio=surround, audio_rate=48000, layout="5.1")
    expected["audio_51.mp4"] = "kept"

    c = _clip(9)
    stored = np.ascontiguousarray(np.rot90(c.frames, -1, axes=(1, 2)))  # pixels stored turned clockwise
    write_mp4(out / "rot.tmp.mp4", stored, 25.0, crf=BITRATE_CRF, audio=c.audio, sample_rate=16000)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        subprocess.run(
            [
                ffmpeg,
                "-v",
                "error",
                "-y",
                "-i",
                str(out / "rot.tmp.mp4"),
                "-c",
                "copy",
                "-metadata:s:v:0",
                "rotate=90",
                str(out / "rotated.mp4"),
            ],
            check=True,
        )
        expected["rotated.mp4"] = "kept"
    (out / "rot.tmp.mp4").unlink()
    return expected
