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
from pathlib import Path

from omegaconf import OmegaConf
from tqdm import tqdm

from data_prep.config import DataPrepConfig, validate_data_prep_config
from data_prep.ledger import merge_parts
from data_prep.pipeline import Models, load_captioner
from data_prep.units import (
    MARKERS,
    PARTS,
    UnitPaths,
    UnitResult,
    config_fingerprint,
    is_done,
    list_inputs,
    make_units,
    process_unit,
    write_plan,
)
from trainer.config.compose import compose_config, register_schema, save_resolved_config
from trainer.config.errors import ConfigError

log = logging.getLogger("talkdit.data_prep")

SYNCNET_SOURCE = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model (joonson/syncnet_python)"
HYPERIQA_SOURCE = "koniq_pretrained.pkl linked from the README of github.com/SSL92/hyperIQA"


def load_config(overrides: list[str]) -> DataPrepConfig:
    """Compose and validate ``conf/data_prep.yaml``.

    Raises:
        ConfigError: Naming the key and the rule.
    """
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    register_schema("data_prep_schema", DataPrepConfig)
    cfg = compose_config("data_prep", overrides)
    try:
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as err:
        raise ConfigError(str(getattr(err, "full_key", "<config>")), "???", "is required and has no value") from err
    except OmegaConfBaseException as err:
        raise ConfigError(str(getattr(err, "full_key", "<config>")), None, " ".join(str(err).split())) from err
    validate_data_prep_config(obj)
    return obj


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def check_weights(cfg: DataPrepConfig) -> None:
    """Fail before any video is touched when an enabled stage's weight file is missing.

    Raises:
        FileNotFoundError: Naming the file and its official source.
    """
    if cfg.sync.enabled and (cfg.sync.model_path is None or not Path(cfg.sync.model_path).is_file()):
        raise FileNotFoundError(
            f"SyncNet weights sync.model_path={cfg.sync.model_path!r} not found; the official syncnet_v2.model "
            f"comes from {SYNCNET_SOURCE}; or set sync.enabled=false"
        )
    enc = cfg.audio.encoder
    if not enc.random_init:
        from trainer.model.whisper_features import WHISPER_SMALL_URL, require_whisper_files

        if enc.path is None:
            raise FileNotFoundError(
                f"audio.encoder.path is not set: the Whisper-small folder comes from {WHISPER_SMALL_URL} "
                "(or export TALKDIT_WHISPER_PATH)"
            )
        require_whisper_files(Path(enc.path))
    if cfg.features.vae_latents and cfg.features.vae.source != "random":
        vae_path = cfg.features.vae.path
        if vae_path is None or not Path(vae_path).exists():
            raise FileNotFoundError(
                f"features.vae.path={vae_path!r} not found: the LTX-Video VAE comes from "
                "https://huggingface.co/Lightricks/LTX-Video-0.9.7-dev (vae/); or set features.vae_latents=false"
            )
    if cfg.quality.enabled and (cfg.quality.model_path is None or not Path(cfg.quality.model_path).is_file()):
        raise FileNotFoundError(
            f"HyperIQA weights quality.model_path={cfg.quality.model_path!r} not found; the official file is "
            f"{HYPERIQA_SOURCE}; or set quality.enabled=false"
        )


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
    """Run the given units locally (in-process for one worker, else a spawn-based process pool)."""
    results: list[UnitResult] = []
    total_videos = sum(len(units[i]) for i in indices)
    bar = tqdm(total=total_videos, unit="video", desc="data_prep", dynamic_ncols=True)
    start = time.perf_counter()
    kept_h = 0.0

    def update(res: UnitResult) -> None:
        nonlocal kept_h
        results.append(res)
        kept_h += res.kept_hours
        bar.update(res.videos)
        elapsed = max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(videos_per_s=f"{bar.n / elapsed:.2f}", hours_kept=f"{kept_h:.3f}")

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
    bar.close()
    return results


def merge(cfg: DataPrepConfig, num_units: int) -> Path:
    """Merge unit parts into ``ledger.parquet`` and write the report."""
    from data_prep.report import write_report

    out = Path(cfg.output_dir)
    parts = [UnitPaths(out, u).part for u in range(num_units)]
    table = merge_parts(parts, out / "ledger.parquet")
    write_report(table, out)
    return out / "ledger.parquet"


def run(cfg: DataPrepConfig) -> dict:
    """Run the pipeline for a validated config; returns a summary."""
    out = Path(cfg.output_dir)
    videos = list_inputs(cfg)
    units = make_units(videos, cfg.execution.videos_per_unit)
    check_weights(cfg)
    load_captioner(cfg.features.captioner)  # a bad captioner spec fails before any video is touched
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTS).mkdir(exist_ok=True)
    (out / MARKERS).mkdir(exist_ok=True)
    save_resolved_config(cfg, out / "config.yaml")
    write_plan(cfg, units)
    fingerprint = config_fingerprint(cfg)
    if cfg.execution.unit_index is not None:
        if not 0 <= cfg.execution.unit_index < len(units):
            raise ConfigError("execution.unit_index", cfg.execution.unit_index, f"must be in [0, {len(units)})")
        indices = [cfg.execution.unit_index]
    else:
        indices = list(range(len(units)))
    pending = [i for i in indices if not is_done(UnitPaths(out, i), fingerprint)]
    results = run_units(cfg, units, pending) if pending else []
    all_done = all(is_done(UnitPaths(out, i), fingerprint) for i in range(len(units)))
    ledger = merge(cfg, len(units)) if cfg.execution.merge and all_done else None
    return {
        "videos": len(videos),
        "units": len(units),
        "processed_units": [r.unit for r in results],
        "skipped_units": len(indices) - len(pending),
        "ledger": ledger,
    }


def main(argv: list[str] | None = None) -> int:
    """Console entry point; a bad config or missing weight file exits with status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        summary = run(load_config(args))
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{summary['videos']} videos in {summary['units']} units; processed units {summary['processed_units']}, "
        f"skipped {summary['skipped_units']} already done"
    )
    if summary["ledger"]:
        out = Path(summary["ledger"]).parent
        print(
            f"ledger: {summary['ledger']}\nshards: {out / 'shards'}\nreport: {out / 'report.md'}, {out / 'report.png'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
