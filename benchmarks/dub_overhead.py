"""What a dub costs beyond sampling: wall time of ``eval.dub`` against the bare sampler calls inside it.

    python benchmarks/dub_overhead.py [--video V] [--audio A] [--seconds S] [--weights EXPORT --base BASE]
        [--size 128] [--steps 40] [--rounds 1]

One dub of ``--video`` (default: ``../shared/data/real/demo1_video.mp4``, 1080x1920 at 25 fps) with the speech
of ``--audio`` (default: the other recording's) cut to ``--seconds``, with the weights of ``--weights`` on
``--base`` (default: the newest stage-2 export and tiny base ``make demo`` wrote under ``demo_out/``, talkdit's
pretrained tiny model; without them, ``--model smoke`` or no ``demo_out/``: the much smaller random smoke model,
trained for one step and exported into a temporary folder). Reported, as one JSON
object: the dub's wall time and its steps (inputs, model, faces, features, encode, sample, paste), the time
inside the sampler's call, their ratio (``overhead_ratio`` = wall / sampler; target <= 1.5) and the seconds
of output made per second of wall time. Run it under ``/usr/bin/time -v`` for the peak memory (RSS).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from eval.dub.config import register  # noqa: E402
from eval.dub.models import load_models  # noqa: E402
from eval.dub.pipeline import dub  # noqa: E402
from trainer.config.compose import load_config  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real"


def smoke_export(root: Path) -> tuple[Path, Path]:
    """A tiny random model: ``(export_dir, base_dir)``.

    One stage-1 step of the smoke settings on generated shards, exported, and its base written as a diffusers
    folder (the files a user's dub reads).
    """
    from tests.train.conftest import tiny_overrides
    from tests.train.shards import write_simple_shards
    from trainer.config.compose import load_train_config, to_container
    from trainer.export import export_checkpoint
    from trainer.model.backbone import load_transformer
    from trainer.model.base_folder import write_base_folder
    from trainer.train import run

    write_simple_shards(root / "shards", num_clips=2, per_shard=2)
    overrides = tiny_overrides(f"{root}/shards/*.tar", root / "run", 1)
    result = run(overrides)
    export_checkpoint(result.last_checkpoint, root / "export")
    cfg = load_train_config(overrides)
    base = root / "base"
    base.mkdir()
    write_base_folder(base, load_transformer(cfg.model.transformer).state_dict(), to_container(cfg.model), "smoke")
    return root / "export", base


def demo_model() -> tuple[Path, Path] | None:
    """The newest ``(export_dir, base_dir)`` of ``make demo`` under ``demo_out/`` (``None`` without one)."""
    exports = sorted(REPO.glob("demo_out/runs/*/export"), key=lambda p: p.stat().st_mtime)
    bases = sorted(REPO.glob("demo_out/data/tiny_base/*/base_model"), key=lambda p: p.stat().st_mtime)
    return (exports[-1], bases[-1]) if exports and bases else None


def main() -> None:
    """Run the dub(s) and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(REAL / "demo1_video.mp4"))
    parser.add_argument("--audio", default=str(REAL / "demo2_audio.wav"))
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of speech dubbed (null: all)")
    parser.add_argument("--weights", help="export folder (default: a tiny random smoke export)")
    parser.add_argument("--base", help="base diffusers folder of --weights")
    parser.add_argument("--model", choices=("demo", "smoke"), default="demo", help="without --weights: which model")
    parser.add_argument("--size", type=int, default=128, help="side of the model crop (pixels, multiple of 32)")
    parser.add_argument("--steps", type=int, default=40, help="Euler steps (the sampler's default)")
    parser.add_argument("--loop", default="pingpong")
    parser.add_argument("--rounds", type=int, default=1, help="dubs measured (the models load once)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        found = demo_model() if args.model == "demo" else None
        if args.weights is not None:
            weights, base, model = Path(args.weights), Path(args.base), "given"
        elif found is not None:
            (weights, base), model = found, "demo"
        else:
            t = time.perf_counter()
            (weights, base), model = smoke_export(tmp / "model"), "smoke"
            print(f"tiny random smoke model built in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        register()

        def cfg(i: int):
            return load_config(
                "dub",
                [
                    f"video={args.video}",
                    f"audio={args.audio}",
                    f"weights={weights}",
                    f"base={base}",
                    f"output={tmp / f'dub{i}.mp4'}",
                    f"duration={args.seconds}",
                    f"size=[{args.size},{args.size}]",
                    f"sampler.num_steps={args.steps}",
                    f"loop={args.loop}",
                ],
            )

        t = time.perf_counter()
        models = load_models(cfg(0))
        load_s = time.perf_counter() - t
        rounds = []
        for i in range(args.rounds):
            t = time.perf_counter()
            result = dub(cfg(i), models)
            wall = time.perf_counter() - t
            out_s = result.num_frames / result.fps
            rounds.append(
                {
                    "wall_s": round(wall, 3),
                    "sampler_s": round(result.sampler_s, 3),
                    "overhead_ratio": round(wall / result.sampler_s, 3),
                    "output_s_per_wall_s": round(out_s / wall, 4),
                    "steps_s": {k: round(v, 3) for k, v in result.seconds.items()},
                }
            )
    best = min(rounds, key=lambda r: r["wall_s"])
    print(
        json.dumps(
            {
                "model": model,
                "weights": str(weights) if model != "smoke" else "smoke (temporary)",
                "video": args.video,
                "size": list(result.size),
                "fps": result.fps,
                "output_s": round(out_s, 3),
                "output_frames": result.num_frames,
                "model_crop": list(result.model_size),
                "sampler_steps": args.steps,
                "torch_threads": torch.get_num_threads(),
                "model_load_s": round(load_s, 3),
                **best,
                "rounds": rounds,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
