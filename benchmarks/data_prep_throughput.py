"""Throughput of probe + decode + scene + face analysis: decode once vs decode per stage (target >= 3x).

Both variants run in this process on the same files with the same analysis code
(:class:`data_prep.analysis.FrameAnalysis`, :func:`data_prep.probe.probe_video`):

* **single pass** (talkdit): probe, then one decoding pass that feeds every frame to the scene and face
  analysis in memory;
* **decode per stage** (the baseline pattern): probe; a decode-check stage that decodes the file; a scene
  stage that decodes it again for the scene analysis; a face stage that decodes it a third time for the
  face analysis.

Reported: seconds of source video processed per wall-clock second for each, their ratio, and each stage's
share of the single pass. Rounds alternate the two variants. Prints one JSON object.

Usage: python benchmarks/data_prep_throughput.py [--videos a.mp4 b.mp4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from data_prep.analysis import FrameAnalysis
from data_prep.config import FaceConfig, SceneConfig
from data_prep.decode import SourceDecoder
from data_prep.probe import probe_video

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def single_pass(path: Path, faces: FaceConfig) -> tuple[float, dict[str, float]]:
    """Wall time and per-stage seconds of probe + one decode feeding both analyses."""
    t0 = time.perf_counter()
    probe = probe_video(path)
    t_probe = time.perf_counter() - t0
    decoder = SourceDecoder(path, expected_frames=probe.num_frames, analysis_long_side=faces.analysis_long_side)
    with FrameAnalysis(SceneConfig(), faces, probe.fps) as analysis:
        for frame in decoder.frames():
            analysis.add(frame)
    wall = time.perf_counter() - t0
    stages = {"probe": t_probe, **analysis.seconds}
    # Decoding and the downscale run on the decoder's thread, overlapped with the analysis; what remains
    # of the wall time is the part of decoding the analysis could not hide.
    stages["decode (not overlapped)"] = wall - sum(stages.values())
    return wall, stages


def decode_per_stage(path: Path, face_cfg: FaceConfig) -> float:
    """Wall time of the same work with the file decoded anew by each stage."""
    t0 = time.perf_counter()
    probe = probe_video(path)
    decoder = SourceDecoder(path, expected_frames=probe.num_frames)
    for _ in decoder.frames():  # decode check
        pass
    for scenes, faces in ((SceneConfig(), FaceConfig(enabled=False)), (SceneConfig(enabled=False), face_cfg)):
        with FrameAnalysis(scenes, faces, probe.fps) as analysis:
            decoder = SourceDecoder(path, expected_frames=probe.num_frames, analysis_long_side=faces.analysis_long_side)
            for frame in decoder.frames():
                analysis.add(frame)
    return time.perf_counter() - t0


def main() -> None:
    """Run both variants and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="*", type=Path, default=[REAL / "demo1_video.mp4", REAL / "demo2_video.mp4"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-mesh", action="store_true", help="lower-face boxes from detector keypoints only")
    args = parser.parse_args()
    face_cfg = FaceConfig(use_mesh=not args.no_mesh)
    missing = [str(v) for v in args.videos if not v.is_file()]
    if missing:
        raise SystemExit(f"videos not found: {missing} (the real recordings live in ../shared/data/real)")
    seconds = sum(probe_video(v).duration_s for v in args.videos)
    single, baseline, shares = [], [], []
    for _ in range(args.rounds):
        wall, stages = 0.0, {}
        for v in args.videos:
            w, s = single_pass(v, face_cfg)
            wall += w
            for k, x in s.items():
                stages[k] = stages.get(k, 0.0) + x
        single.append(wall)
        shares.append({k: x / wall for k, x in stages.items()})
        baseline.append(sum(decode_per_stage(v, face_cfg) for v in args.videos))
    s_med, b_med = statistics.median(single), statistics.median(baseline)
    print(
        json.dumps(
            {
                "benchmark": "data_prep_throughput",
                "videos": [v.name for v in args.videos],
                "source_seconds": round(seconds, 3),
                "rounds": args.rounds,
                "face_mesh": face_cfg.use_mesh,
                "single_pass_video_s_per_s": round(seconds / s_med, 3),
                "decode_per_stage_video_s_per_s": round(seconds / b_med, 3),
                "ratio_single_over_per_stage": round(b_med / s_med, 3),
                "target_ratio_min": 3.0,
                "single_pass_stage_share": {k: round(statistics.mean(s[k] for s in shares), 3) for k in shares[0]},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
