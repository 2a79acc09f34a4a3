"""A synthetic talking-head corpus turned into shards by the data_prep pipeline (reused when already done).

The demo trains on one such corpus and measures lip sync on another, whose people it never saw
(:mod:`eval.lipsync`); both go through the same data_prep filters as any user's videos.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CorpusSpec:
    """What a synthetic corpus and its shards look like.

    Attributes:
        num_videos: Videos (people) in the corpus.
        seed: Corpus seed (held-out sets use another seed than the training set).
        fps: Frame rates drawn per video.
        duration_s: Length of each video.
        size: Frame width and height in pixels.
        zoom: Camera zoom (1.5: face-centred crops, what a lip-sync model is trained on).
        clip_frames: Frames per clip (8k+1), back to back.
        audio: Audio config name of the Whisper features written into the shards (``tiny``, ``whisper_small``).
        num_reference_frames: Identity reference frames per clip.
        prep_overrides: Extra data_prep overrides.
    """

    num_videos: int = 48
    seed: int = 0
    fps: list[float] = field(default_factory=lambda: [25.0, 30.0])
    duration_s: float = 4.0
    size: int = 128
    zoom: float = 1.5
    clip_frames: int = 25
    audio: str = "tiny"
    num_reference_frames: int = 2
    prep_overrides: list[str] = field(default_factory=list)

    def name(self) -> str:
        """A folder name that changes with every setting that changes the shards.

        The audio part carries a digest of the composed audio config and the extra overrides: the shards hold
        the encoder's features, so a changed encoder (its architecture, seed or initialisation) must not reuse
        shards written by the old one.
        """
        rates = "-".join(f"{f:g}" for f in self.fps)
        return (
            f"{self.num_videos}v_{self.size}px_z{self.zoom:g}_{rates}fps_{self.duration_s:g}s_{self.clip_frames}f_"
            f"{self.audio}-{self.settings_digest()}_seed{self.seed}"
        )

    def settings_digest(self) -> str:
        """Eight hex digits of the resolved audio config and ``prep_overrides``."""
        from omegaconf import OmegaConf

        from data_prep.run import load_config

        cfg = load_config(["input_dir=unused", "output_dir=unused", f"audio={self.audio}", *self.prep_overrides])
        text = OmegaConf.to_yaml(cfg.audio) + "\n".join(self.prep_overrides)
        return hashlib.sha1(text.encode()).hexdigest()[:8]


@dataclass
class PreparedCorpus:
    """Where a prepared corpus is.

    Attributes:
        corpus: The generated videos (mp4 + wav + manifest).
        prep: data_prep's output folder (ledger, report, shards).
        shards: Glob of the shards.
        summary: data_prep's run summary.
    """

    corpus: Path
    prep: Path
    shards: str
    summary: dict


def prepare_corpus(spec: CorpusSpec, root: str | Path) -> PreparedCorpus:
    """Generate the corpus and run data_prep on it (its ``demo`` filters), under ``root/<spec.name()>``.

    Finished videos and finished data_prep units are skipped, so a second call costs a few seconds.
    """
    from data_prep.run import load_config, run
    from data_prep.synthetic.corpus import generate_corpus

    base = Path(root) / spec.name()
    corpus = base / "corpus"
    generate_corpus(
        corpus,
        spec.num_videos,
        seed=spec.seed,
        fps_choices=tuple(spec.fps),
        duration_s=spec.duration_s,
        width=spec.size,
        height=spec.size,
        zoom=spec.zoom,
    )
    prep = base / "prep"
    cfg = load_config(
        [
            f"input_dir={corpus}",
            f"output_dir={prep}",
            "filters=demo",
            f"audio={spec.audio}",
            f"clips.num_frames={spec.clip_frames}",
            f"clips.stride_frames={spec.clip_frames}",
            f"features.num_reference_frames={spec.num_reference_frames}",
            *spec.prep_overrides,
        ]
    )
    summary = run(cfg)
    return PreparedCorpus(corpus=corpus, prep=prep, shards=f"{prep}/shards/*.tar", summary=summary)
