"""Reading dub outputs back for the tests: frames upright, audio at 16 kHz, PSNR outside the crop windows."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from data_prep.audio import decode_audio


def video_stream_info(path) -> dict:
    """Size, rate, frame count, rotation and duration of a file's video stream; its audio stream's codec and length."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        a = c.streams.audio[0] if c.streams.audio else None
        return {
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "fps": Fraction(v.average_rate),
            "frames": len(frames),
            "rotation": int(frames[0].rotation or 0),
            "duration": float(frames[-1].time - frames[0].time) + 1.0 / float(v.average_rate),
            "audio_codec": a.codec_context.name if a is not None else None,
            # The container's length of the audio track (the AAC encoder pads its last frame; the edit list cuts it).
            "audio_duration": float(a.duration * a.time_base) if a is not None and a.duration else None,
        }


def upright_frames(path) -> Iterator[np.ndarray]:
    """RGB frames ``[H, W, 3]`` of a video as shown (display rotation applied), one at a time."""
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            k = int(round((frame.rotation or 0) / 90)) % 4
            rgb = frame.to_ndarray(format="rgb24")
            yield np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def psnr_outside_windows(output, source, source_frames: np.ndarray, windows: np.ndarray) -> float:
    """PSNR (dB) of the output against the source frames it shows, over the pixels outside the crop windows.

    Args:
        output: The dubbed video.
        source: The source video.
        source_frames: Source frame of every output frame ``[N]``.
        windows: Crop window of every output frame ``[N, 4]`` (x0, y0, x1, y1), upright source pixels.
    """
    wanted = set(int(i) for i in source_frames)
    src = {i: f for i, f in enumerate(upright_frames(source)) if i in wanted}
    sq, count = 0.0, 0
    for j, out in enumerate(upright_frames(output)):
        ref = src[int(source_frames[j])]
        keep = np.ones(out.shape[:2], bool)
        x0, y0, x1, y1 = (int(v) for v in windows[j])
        keep[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
        diff = out[keep].astype(np.float64) - ref[keep].astype(np.float64)
        sq += float((diff**2).sum())
        count += diff.size
    assert j + 1 == len(source_frames), (j + 1, len(source_frames))
    return 10 * np.log10(255.0**2 / max(sq / count, 1e-12))


def audio_correlation(output, speech) -> float:
    """Pearson correlation of the output's audio with the speech, both decoded to 16 kHz mono (the output's
    decoded length may exceed the speech by the AAC encoder's padding of its last frame)."""
    got, want = decode_audio(str(output)), decode_audio(str(speech))
    n = min(got.size, want.size)
    return float(np.corrcoef(got[:n], want[:n])[0, 1])
