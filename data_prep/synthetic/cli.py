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

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data_prep.synthetic.corpus import MANIFEST_NAME, generate_corpus


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


def parse_config(overrides: Sequence[str]) -> SyntheticCorpusConfig:
    """Merge ``key=value`` overrides onto the defaults.

    Args:
        overrides: dotlist items; ``fps=30`` is accepted as shorthand for ``fps=[30]``.

    Returns:
        The validated settings.

    Raises:
        ValueError: on an item without ``=``, an unknown key or a value of the wrong type; the message
            names the offending key.
    """
    items = []
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        if key.strip() == "fps" and not value.strip().startswith("["):
            value = f"[{value}]"
        items.append(f"{key}={value}")
    base = OmegaConf.structured(SyntheticCorpusConfig)
    OmegaConf.set_struct(base, True)
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(items))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        message = str(err).splitlines()[0]
        raise ValueError(f"{key}: {message}" if key and key not in message else message) from err
    return OmegaConf.to_object(merged)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = parse_config(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
