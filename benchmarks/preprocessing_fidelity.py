"""Preprocessing fidelity against ffmpeg and the official SyncNet pipeline, on the real recordings (issue 12).

Measured in one run, each against its reference computed in the same run:

* ``audio``: every recording's audio through :func:`data_prep.audio.decode_audio` vs ``ffmpeg -i <video> -vn
  -ac 1 -ar 16000`` (max abs error, correlation, level ratio), and the previous decoding (libswresample
  float mono without the unit-sum scaling) for comparison;
* ``stored_audio``: data_prep run on the recordings (bitrate filter relaxed, SyncNet and HyperIQA off,
  tiny Whisper), each kept clip's ``audio.wav`` vs ffmpeg's mono track at the clip's start;
* ``frame_rate``: which source frames ``ffmpeg -r 25`` keeps from numbered frames at several rates, against
  the project's rule (:mod:`data_prep.frame_rate`) and the floor rule eval used before (agreement, mean
  and largest time error of each);
* ``sync``: Sync-C, Sync-D and AV offset of every recording with a seeded random SyncNet (no weights can be
  downloaded here) under the direct protocol (:func:`eval.metrics.sync.sync_scores` on the decoded video)
  and the official one (:func:`eval.metrics.sync_official.official_sync_scores`, MediaPipe faces: no
  ``sfd_face.pth`` here either).

Prints one JSON object. Usage: python benchmarks/preprocessing_fidelity.py [--real-dir DIR] [--skip data_prep sync]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import tarfile
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch

from data_prep.audio import decode_audio, resampled_samples
from data_prep.frame_rate import resample_indices

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
VIDEOS = ("demo1_video.mp4", "demo2_video.mp4")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def ffmpeg_mono(video: Path, tmp: Path) -> np.ndarray:
    out = tmp / f"{video.stem}.ffmpeg.wav"
    ffmpeg("-i", str(video), "-vn", "-ac", "1", "-ar", "16000", str(out))
    return sf.read(out, dtype="int16")[0].astype(np.float32) / 32768


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    n = min(ours.shape[0], ref.shape[0])
    a, b = ours[:n], ref[:n]
    return {
        "samples": [int(ours.shape[0]), int(ref.shape[0])],
        "max_abs_error": float(np.abs(a - b).max()),
        "max_abs_error_16bit_steps": float(np.abs(a - b).max() * 32768),
        "correlation": float(np.corrcoef(a, b)[0, 1]),
        "level_ratio": float(np.std(a) / np.std(b)),
    }


def old_float_mono(video: Path) -> np.ndarray:
    """The decoding before issue 12: libswresample to float mono, downmix matrix left unscaled."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    with av.open(str(video)) as container:
        stream = container.streams.audio[0]
        return resampled_samples((f for p in container.demux(stream) for f in p.decode()), resampler)


def audio_section(videos: list[Path], tmp: Path) -> dict:
    out = {}
    for video in videos:
        with av.open(str(video)) as container:
            layout = container.streams.audio[0].layout.name
        ref = ffmpeg_mono(video, tmp)
        out[video.name] = {
            "layout": layout,
            "talkdit": compare(decode_audio(video), ref),
            "before_issue12": compare(old_float_mono(video), ref),
        }
    return out


def stored_audio_section(videos: list[Path], tmp: Path) -> dict:
    from data_prep.run import load_config, run

    listing = tmp / "videos.txt"
    listing.write_text("\n".join(map(str, videos)) + "\n")
    out_dir = tmp / "prep"
    cfg = load_config(
        [
            f"input_list={listing}",
            f"output_dir={out_dir}",
            "audio=tiny",
            "sync.enabled=false",
            "quality.enabled=false",
            "probe.min_bitrate_kbps=500",
            "clips.max_long_side=512",
        ]
    )
    run(cfg)
    import pyarrow.parquet as pq

    rows = [r for r in pq.read_table(out_dir / "ledger.parquet").to_pylist() if r["kind"] == "clip"]
    refs, clips = {}, []
    for r in rows:
        if r["status"] != "kept":
            continue
        if r["source"] not in refs:
            refs[r["source"]] = ffmpeg_mono(Path(r["source"]), tmp)
        with tarfile.open(out_dir / "shards" / r["shard"]) as tar:
            stored = sf.read(io.BytesIO(tar.extractfile(f"{r['clip_id']}.audio.wav").read()), dtype="int16")[0]
        stored = stored.astype(np.float32) / 32768
        a0 = round(r["start_s"] * 16000)
        cmp = compare(stored, refs[r["source"]][a0 : a0 + stored.shape[0]])
        clips.append({"source": Path(r["source"]).name, "clip_id": r["clip_id"], "start_s": r["start_s"], **cmp})
    return {
        "clips": clips,
        "max_abs_error": max(c["max_abs_error"] for c in clips),
        "min_correlation": min(c["correlation"] for c in clips),
    }


def numbered_video(path: Path, fps: Fraction, count: int) -> None:
    """Lossless frames whose index is written in binary as 9 black/white bars, 7 px wide."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = 64
        stream.pix_fmt, stream.options = "yuv444p", {"qp": "0"}
        for i in range(count):
            image = np.zeros((64, 64, 3), np.uint8)
            for bit in range(9):
                if (i >> bit) & 1:
                    image[:, bit * 7 : (bit + 1) * 7] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def frame_numbers(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        rows = [f.to_ndarray(format="rgb24")[32, :, 0] for f in container.decode(video=0)]
    return np.array([sum(1 << b for b in range(9) if row[b * 7 + 3] > 128) for row in rows])


def lag_ms(ticks: np.ndarray, idx: np.ndarray, fps: float) -> dict:
    """How far the chosen pictures are behind their ticks (> 0: older than the tick), in ms."""
    err = (ticks - idx / fps) * 1000
    return {"mean_ms": float(err.mean()), "max_abs_ms": float(np.abs(err).max())}


def frame_rate_section(tmp: Path) -> dict:
    out = {}
    for name, fps in (
        ("24", Fraction(24)),
        ("29.97", Fraction(30000, 1001)),
        ("30", Fraction(30)),
        ("60", Fraction(60)),
    ):
        count = int(round(4 * fps))
        src, avi = tmp / f"n{name}.mp4", tmp / f"n{name}.avi"
        numbered_video(src, fps, count)
        ffmpeg("-i", str(src), "-qscale:v", "2", "-r", "25", str(avi))
        kept = frame_numbers(avi)
        ours = resample_indices(count, float(fps), 25.0)
        n = min(kept.size, ours.size)
        ticks = np.arange(n) / 25.0
        floor = np.minimum(np.floor(ticks * float(fps) + 1e-9).astype(int), count - 1)

        out[name] = {
            "frames": {"source": count, "ffmpeg_r25": int(kept.size), "talkdit": int(ours.size)},
            "agreement_talkdit_vs_ffmpeg": float(np.mean(ours[:n] == kept[:n])),
            "agreement_talkdit_vs_floor": float(np.mean(ours[:n] == floor)),
            "video_lag": {
                "ffmpeg_r25": lag_ms(ticks, kept[:n], float(fps)),
                "talkdit": lag_ms(ticks, ours[:n], float(fps)),
                "floor": lag_ms(ticks, floor, float(fps)),
            },
        }
    return out


def decode_rgb(path: Path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    return frames, fps


def sync_section(videos: list[Path]) -> dict:
    from data_prep.models.syncnet import SyncNet
    from eval.metrics.sync import sync_scores
    from eval.metrics.sync_official import MediaPipeFaces, official_sync_scores

    torch.manual_seed(0)
    model = SyncNet().eval()
    out = {"syncnet": "random weights, torch.manual_seed(0)"}
    for video in videos:
        frames, fps = decode_rgb(video)
        direct = sync_scores(model, frames, decode_audio(video), fps)
        del frames
        with MediaPipeFaces() as faces:
            official = official_sync_scores(model, video, faces, "mediapipe")
        out[video.name] = {
            "direct": {
                "sync_c": direct.confidence,
                "sync_d": direct.min_dist,
                "offset_frames": direct.offset_frames,
                "windows": direct.num_windows,
            },
            "official_mediapipe_faces": {
                "sync_c": official.confidence,
                "sync_d": official.min_dist,
                "offset_frames": official.offset_frames,
                "tracks": official.spans,
                "windows": [t.num_windows for t in official.tracks],
            },
            "sync_c_relative_difference": abs(official.confidence - direct.confidence) / abs(direct.confidence),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-dir", type=Path, default=REAL)
    parser.add_argument("--skip", nargs="*", default=[], choices=["audio", "data_prep", "frame_rate", "sync"])
    args = parser.parse_args()
    videos = [args.real_dir / v for v in VIDEOS]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise SystemExit(f"error: real recordings not found: {', '.join(missing)} (pass --real-dir)")
    result = {}
    with tempfile.TemporaryDirectory(prefix="talkdit-fidelity-") as tmp:
        tmp = Path(tmp)
        if "audio" not in args.skip:
            result["audio"] = audio_section(videos, tmp)
        if "frame_rate" not in args.skip:
            result["frame_rate"] = frame_rate_section(tmp)
        if "data_prep" not in args.skip:
            result["stored_audio"] = stored_audio_section(videos, tmp)
        if "sync" not in args.skip:
            result["sync"] = sync_section(videos)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
