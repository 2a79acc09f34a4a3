"""Run directories: one folder per run holding its resolved config, checkpoints and logs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from trainer.config.compose import save_resolved_config

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
# Set by the launching process for the worker processes it starts, so all ranks share one run dir.
RUN_DIR_ENV = "TALKDIT_RUN_DIR"


def run_dir_name(experiment_name: str, run_root: str) -> Path:
    """Default run directory: ``<run_root>/<experiment>/<job id or timestamp>``.

    Under SLURM the job id names the run so that a requeued job finds its own folder again; processes
    started by a local launcher inherit the launcher's choice through ``TALKDIT_RUN_DIR``.
    """
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    job = os.environ.get("SLURM_JOB_ID")
    leaf = f"job{job}" if job else time.strftime("%Y%m%d-%H%M%S")
    return Path(run_root) / experiment_name / leaf


def resolve_run_dir(cfg) -> Path:
    """The run directory a config names (explicit ``run_dir`` or the default)."""
    return Path(cfg.run_dir) if cfg.run_dir else run_dir_name(cfg.experiment_name, cfg.run_root)


def auto_resume_checkpoint(cfg) -> Path | None:
    """For ``resume=auto``: the run directory's ``last.ckpt`` if it exists."""
    last = resolve_run_dir(cfg) / CHECKPOINT_DIR / "last.ckpt"
    return last if last.is_file() else None


def prepare_run_dir(cfg, resuming: bool) -> Path:
    """Create the run directory and save the resolved config in it (atomically).

    Args:
        cfg: The validated training config (dataclass).
        resuming: Whether the run continues from a checkpoint (then an existing folder is expected).

    Returns:
        The run directory.

    Raises:
        FileExistsError: The folder already holds checkpoints and the run does not resume from one.
    """
    path = resolve_run_dir(cfg)
    ckpts = path / CHECKPOINT_DIR
    if not resuming and ckpts.is_dir() and any(ckpts.iterdir()):
        raise FileExistsError(
            f"run_dir {path} already holds checkpoints; pass resume=<checkpoint> to continue it "
            "or choose another run_dir"
        )
    path.mkdir(parents=True, exist_ok=True)
    save_resolved_config(cfg, path / CONFIG_FILE)
    return path


def metrics_files(run_dir: str | os.PathLike) -> list[Path]:
    """CSV metric logs of a run, oldest launch first (each launch, a resume included, logs a new version)."""
    logs = Path(run_dir) / "logs"
    found = [p for p in logs.glob("version_*/metrics.csv")]
    return sorted(found, key=lambda p: int(p.parent.name.split("_", 1)[1]))
