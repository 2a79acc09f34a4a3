"""Command line: generate a synthetic talking-head corpus.

Usage::

    python -m data_prep.synthetic.cli out_dir=/tmp/x num_videos=4 seed=0 duration_s=5 fps=[25,30] \
        width=256 height=256

Every setting is a ``key=value`` override of ``SyntheticCorpusConfig``; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from data_prep.synthetic.corpus import MANIFEST_NAME, generate_corpus
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config, register_schema


@dataclasses.dataclass
class SyntheticCorpusConfig:
    """Settings of a synthetic corpus run.

    Attributes:
        out_dir: output folder.
        num_videos: number of videos.
        seed: corpus seed.
        duration_s: length of each video in seconds.
        fps: frame rates to draw each video's rate from.
        width: frame width in pixels (even).
        height: frame height in pixels (even).
        zoom: camera zoom (1: head and shoulders; 1.5: face-centred crops).
    """

    out_dir: str = "synthetic_corpus"
    num_videos: int = 4
    seed: int = 0
    duration_s: float = 5.0
    fps: list[float] = dataclasses.field(default_factory=lambda: [25.0])
    width: int = 256
    height: int = 256
    zoom: float = 1.0


def register() -> None:
    """Register :class:`SyntheticCorpusConfig` as the config ``synthetic`` (composed like every entry point's)."""
    register_schema("synthetic", SyntheticCorpusConfig)


def _fps_shorthand(overrides: Sequence[str]) -> list[str]:
    """``fps=30`` is accepted as shorthand for ``fps=[30]``."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip().lstrip("+") == "fps" and not value.strip().startswith("["):
            item = f"{key}=[{value}]"
        out.append(item)
    return out


COMMAND = Command(
    module="data_prep.synthetic.cli",
    config_name="synthetic",
    summary="""Generate a corpus of synthetic talking-head videos: procedurally rendered, shaded faces whose mouths
open and close with the syllables of generated speech-like audio, deterministic from a seed. Writes
<video_id>.mp4 + <video_id>.wav per video and manifest.json.""",
    examples=("python -m data_prep.synthetic.cli out_dir=/tmp/x num_videos=4 seed=0 duration_s=5 fps=[25,30]",),
    register=register,
)


def parse_config(overrides: Sequence[str]) -> SyntheticCorpusConfig:
    """Merge ``key=value`` overrides onto the defaults.

    Args:
        overrides: Overrides; ``fps=30`` is accepted as shorthand for ``fps=[30]``.

    Returns:
        The settings.

    Raises:
        ConfigError: On an unknown key (naming the closest valid one) or a value of the wrong type.
    """
    register()
    return load_config("synthetic", _fps_shorthand(overrides))


def _generate(overrides: list[str]) -> int:
    config = parse_config(overrides)
    entries = generate_corpus(
        config.out_dir,
        num_videos=config.num_videos,
        seed=config.seed,
        fps_choices=tuple(config.fps),
        duration_s=config.duration_s,
        width=config.width,
        height=config.height,
        zoom=config.zoom,
    )
    out = Path(config.out_dir).resolve()
    print(f"{len(entries)} videos (mp4 + wav) in {out}")
    print(f"manifest: {out / MANIFEST_NAME}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (2 for bad arguments)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return run_command(COMMAND, _fps_shorthand(args), _generate, errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
