"""``python -m data_prep.run input_dir=<dir> output_dir=<dir> [overrides]``: raw videos to filtered shards.

Writes ``<output_dir>/shards/*.tar`` (+ ``.idx.json``), ``ledger.parquet``, ``report.md`` and
``report.png``. Units run in a local process pool, or one per SLURM array task with
``execution.unit_index=$SLURM_ARRAY_TASK_ID``; both write identical outputs. A rerun skips finished units.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data_prep.config import DataPrepConfig, register, validate_data_prep_config
from data_prep.ledger import merge_parts
from data_prep.models import Models
from data_prep.units import (
    MARKERS,
    OTHER_FILES_PART,
    PARTS,
    SHARDS,
    UnitPaths,
    UnitResult,
    config_fingerprint,
    input_files,
    is_done,
    make_units,
    process_unit,
    write_other_files,
    write_plan,
)
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config as compose_load_config
from trainer.config.compose import save_resolved_config
from trainer.config.errors import ConfigError
from trainer.model.whisper_config import WHISPER_SMALL_URL, whisper_folder_problem

log = logging.getLogger("talkdit.data_prep")

SYNCNET_SOURCE = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model (joonson/syncnet_python)"
HYPERIQA_SOURCE = "koniq_pretrained.pkl linked from the README of github.com/SSL92/hyperIQA"


COMMAND = Command(
    module="data_prep.run",
    config_name="data_prep",
    synopsis="input_dir=<dir> | input_list=<file>  output_dir=<dir> [key=value ...]",
    summary="""Raw videos to filtered clips: probe, one decoding pass with scene and face analysis in memory,
clips, SyncNet and HyperIQA scores, Whisper features, reference frames, and WebDataset shards. Every input
file gets a ledger row (ledger.parquet) with its status and reason; report.md and report.png summarise it.""",
    examples=(
        "python -m data_prep.run input_dir=/data/raw output_dir=/data/prep",
        "python -m data_prep.run input_list=videos.txt output_dir=/data/prep filters=demo audio=tiny",
        "python -m data_prep.run input_dir=/data/raw output_dir=/data/prep sync.enabled=false quality.enabled=false",
    ),
    notes="""Weight files (nothing is downloaded), each from an environment variable or a key:
  TALKDIT_SYNCNET       syncnet_v2.model (sync.model_path); without it: sync.enabled=false
  TALKDIT_HYPERIQA      koniq_pretrained.pkl (quality.model_path); without it: quality.enabled=false
  TALKDIT_WHISPER_PATH  openai/whisper-small folder (audio.encoder.path); without it: audio=tiny (random
                        features: for tests and demos only)""",
    register=register,
)


def load_config(overrides: list[str]) -> DataPrepConfig:
    """Compose and validate ``conf/data_prep.yaml``.

    Raises:
        ConfigError: Naming the key and the rule.
    """
    register()
    obj = compose_load_config("data_prep", overrides)
    validate_data_prep_config(obj)
    return obj


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class WeightFile:
    """A weight file an enabled stage needs, and how a user supplies it or runs without it.

    Attributes:
        name: The file and its model, e.g. ``SyncNet syncnet_v2.model``.
        key: The config key holding its path.
        env: The environment variable the default config reads the path from ("" when none).
        source: Where the official file comes from.
        switch_off: The override that runs without it.
    """

    name: str
    key: str
    env: str
    source: str
    switch_off: str

    def describe(self, value: object) -> str:
        """What is missing and the ways out, in one sentence."""
        how = f"set {self.env} or {self.key}" if self.env else f"set {self.key}"
        return (
            f"{self.name} ({self.key}={value!r}): {how}; official file: {self.source}; run without: {self.switch_off}"
        )


SYNCNET_WEIGHTS = WeightFile(
    "SyncNet syncnet_v2.model", "sync.model_path", "TALKDIT_SYNCNET", SYNCNET_SOURCE, "sync.enabled=false"
)
HYPERIQA_WEIGHTS = WeightFile(
    "HyperIQA koniq_pretrained.pkl", "quality.model_path", "TALKDIT_HYPERIQA", HYPERIQA_SOURCE, "quality.enabled=false"
)
WHISPER_WEIGHTS = WeightFile(
    "Whisper-small folder",
    "audio.encoder.path",
    "TALKDIT_WHISPER_PATH",
    f"{WHISPER_SMALL_URL} (config.json and model.safetensors)",
    "audio=tiny (a random encoder: features for tests and demos only)",
)
VAE_WEIGHTS = WeightFile(
    "LTX-Video VAE",
    "features.vae.path",
    "",
    "https://huggingface.co/Lightricks/LTX-Video-0.9.7-dev (vae/)",
    "features.vae_latents=false",
)


def missing_weights(cfg: DataPrepConfig) -> list[str]:
    """Every weight file an enabled stage needs and cannot find, each described with its ways out."""
    missing = []
    if cfg.sync.enabled and (cfg.sync.model_path is None or not Path(cfg.sync.model_path).is_file()):
        missing.append(SYNCNET_WEIGHTS.describe(cfg.sync.model_path))
    if cfg.quality.enabled and (cfg.quality.model_path is None or not Path(cfg.quality.model_path).is_file()):
        missing.append(HYPERIQA_WEIGHTS.describe(cfg.quality.model_path))
    enc = cfg.audio.encoder
    if not enc.random_init:
        problem = "not set" if enc.path is None else whisper_folder_problem(Path(enc.path))
        if problem is not None:
            missing.append(f"{WHISPER_WEIGHTS.describe(enc.path)} [{problem}]")
    vae = cfg.features.vae
    if cfg.features.vae_latents and vae.source != "random" and (vae.path is None or not Path(vae.path).exists()):
        missing.append(VAE_WEIGHTS.describe(vae.path))
    return missing


def check_weights(cfg: DataPrepConfig) -> None:
    """Fail before any video is touched when enabled stages lack weight files, naming all of them at once.

    Raises:
        FileNotFoundError: Listing each missing file with its variable, official source and the override
            that runs without it.
    """
    missing = missing_weights(cfg)
    if missing:
        count = f"{len(missing)} weight files are" if len(missing) > 1 else "a weight file is"
        raise FileNotFoundError(f"{count} missing: " + " | ".join(f"({i}) {m}" for i, m in enumerate(missing, 1)))


def load_models(cfg: DataPrepConfig) -> Models:
    """Load every model the enabled stages need (once per worker), with weight fingerprints."""
    from trainer.model.whisper_features import WhisperFeatureExtractor

    check_weights(cfg)
    enc = cfg.audio.encoder
    fingerprints = {
        "whisper": f"random_init(seed={enc.seed},arch={enc.arch})" if enc.random_init else f"dir:{enc.path}"
    }
    models = Models(whisper=WhisperFeatureExtractor(enc), fingerprints=fingerprints)
    if cfg.sync.enabled:
        from data_prep.models.syncnet import load_syncnet

        models.syncnet = load_syncnet(cfg.sync.model_path)
        fingerprints["syncnet"] = _sha(Path(cfg.sync.model_path))
    if cfg.quality.enabled:
        from data_prep.models.hyperiqa import load_hyperiqa

        models.hyperiqa = load_hyperiqa(cfg.quality.model_path)
        fingerprints["hyperiqa"] = _sha(Path(cfg.quality.model_path))
    if cfg.features.vae_latents:
        from trainer.model.vae import load_vae

        models.vae = load_vae(cfg.features.vae)
        fingerprints["vae"] = f"{cfg.features.vae.source}:{cfg.features.vae.path}:{cfg.features.vae.init_seed}"
    return models


_WORKER: dict = {}


def _init_worker(cfg: DataPrepConfig) -> None:
    import torch

    torch.set_num_threads(1)  # one video per worker process; the pool provides the parallelism
    _WORKER["cfg"] = cfg
    _WORKER["models"] = load_models(cfg)


def _run_unit(args: tuple[int, list[str]]) -> UnitResult:
    unit, videos = args
    return process_unit(_WORKER["cfg"], unit, [Path(v) for v in videos], _WORKER["models"])


def run_units(cfg: DataPrepConfig, units: list[list[Path]], indices: list[int]) -> list[UnitResult]:
    """Run the given units locally (in-process for one worker, else a spawn-based process pool).

    Progress is a bar on a terminal; otherwise (a log file, a SLURM task) one line per finished unit, since a
    bar's carriage returns make one ever-growing line in a file.
    """
    results: list[UnitResult] = []
    total_videos = sum(len(units[i]) for i in indices)
    bar = tqdm(total=total_videos, unit="video", desc="data_prep", dynamic_ncols=True) if sys.stderr.isatty() else None
    start = time.perf_counter()
    done = {"videos": 0, "kept_h": 0.0, "source_s": 0.0}

    def update(res: UnitResult) -> None:
        results.append(res)
        done["videos"] += res.videos
        done["kept_h"] += res.kept_hours
        done["source_s"] += res.source_seconds
        elapsed = max(time.perf_counter() - start, 1e-9)
        if bar is not None:
            bar.update(res.videos)
            bar.set_postfix(videos_per_s=f"{done['videos'] / elapsed:.2f}", hours_kept=f"{done['kept_h']:.3f}")
            return
        left = (total_videos - done["videos"]) * elapsed / max(done["videos"], 1)
        log.info(
            "unit %d done: %d/%d videos, %.1f s of video in %.0f s (%.2f s per video second), %.3f h kept, "
            "%.1f min left",
            res.unit,
            done["videos"],
            total_videos,
            done["source_s"],
            elapsed,
            elapsed / max(done["source_s"], 1e-9),
            done["kept_h"],
            left / 60,
        )

    if cfg.execution.workers == 1 or len(indices) == 1:
        models = load_models(cfg)
        for i in indices:
            update(process_unit(cfg, i, units[i], models))
    else:
        ctx = mp.get_context("spawn")  # MediaPipe and torch do not survive fork()
        with ProcessPoolExecutor(
            cfg.execution.workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg,)
        ) as pool:
            for res in pool.map(_run_unit, [(i, [str(v) for v in units[i]]) for i in indices]):
                update(res)
    if bar is not None:
        bar.close()
    return results


def merge(cfg: DataPrepConfig, num_units: int) -> Path:
    """Merge unit parts (and the rows of the input's other files) into ``ledger.parquet``; write the report."""
    from data_prep.report import write_report

    out = Path(cfg.output_dir)
    parts = [UnitPaths(out, u).part for u in range(num_units)]
    if (out / PARTS / OTHER_FILES_PART).is_file():
        parts.append(out / PARTS / OTHER_FILES_PART)
    table = merge_parts(parts, out / "ledger.parquet")
    write_report(table, out)
    return out / "ledger.parquet"


def run(cfg: DataPrepConfig) -> dict:
    """Run the pipeline for a validated config; returns a summary.

    Every input is checked before anything is written: the input holds at least one video, enabled stages
    find their weight files, a captioner imports.

    Raises:
        FileNotFoundError: No input video, or weight files missing (all named at once).
        ConfigError: A bad captioner or unit index.
    """
    out = Path(cfg.output_dir)
    videos, others = input_files(cfg)
    if not videos:
        where = f"input_dir {cfg.input_dir}" if cfg.input_dir is not None else f"input_list {cfg.input_list}"
        extra = f" ({len(others)} other files)" if others else ""
        exts = ", ".join(cfg.video_extensions)
        raise FileNotFoundError(f"{where} holds no video{extra}; expected files with one of video_extensions: {exts}")
    units = make_units(videos, cfg.execution.videos_per_unit)
    if cfg.execution.unit_index is not None and not 0 <= cfg.execution.unit_index < len(units):
        raise ConfigError("execution.unit_index", cfg.execution.unit_index, f"must be in [0, {len(units)})")
    check_weights(cfg)
    from data_prep.captions import load_captioner

    load_captioner(cfg.features.captioner)  # a bad captioner spec fails before any video is touched
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTS).mkdir(exist_ok=True)
    (out / MARKERS).mkdir(exist_ok=True)
    save_resolved_config(cfg, out / "config.yaml")
    write_plan(cfg, units)
    write_other_files(cfg, others)
    fingerprint = config_fingerprint(cfg)
    indices = [cfg.execution.unit_index] if cfg.execution.unit_index is not None else list(range(len(units)))
    pending = [i for i in indices if not is_done(UnitPaths(out, i), fingerprint)]
    start = time.perf_counter()
    results = run_units(cfg, units, pending) if pending else []
    seconds = time.perf_counter() - start
    all_done = all(is_done(UnitPaths(out, i), fingerprint) for i in range(len(units)))
    ledger = merge(cfg, len(units)) if cfg.execution.merge and all_done else None
    shards = sorted((out / SHARDS).glob("*.tar")) if (out / SHARDS).is_dir() else []
    return {
        "videos": len(videos),
        "other_files": len(others),
        "units": len(units),
        "processed_units": [r.unit for r in results],
        "skipped_units": len(indices) - len(pending),
        "ledger": ledger,
        "shards": shards,
        "source_seconds": sum(r.source_seconds for r in results),
        "seconds": seconds,
    }


def _run(overrides: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    summary = run(load_config(overrides))
    others = f" (+{summary['other_files']} other files, not processed)" if summary["other_files"] else ""
    print(
        f"{summary['videos']} videos{others} in {summary['units']} units; processed units "
        f"{summary['processed_units']}, skipped {summary['skipped_units']} already done"
    )
    if summary["source_seconds"]:
        print(
            f"time: {summary['seconds']:.1f} s for {summary['source_seconds']:.1f} s of video "
            f"({summary['seconds'] / summary['source_seconds']:.2f} s per video second)"
        )
    if summary["ledger"]:
        out = Path(summary["ledger"]).parent
        print(f"ledger: {summary['ledger']}")
        if summary["shards"]:
            print(f"shards: {len(summary['shards'])} in {out / SHARDS}")
        else:
            print("shards: none (no clip was kept; see the report for the reasons)")
        print(f"report: {out / 'report.md'}, {out / 'report.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point; a bad config, an empty input or missing weight files exit with status 2."""
    return run_command(COMMAND, argv, _run)


if __name__ == "__main__":
    sys.exit(main())
