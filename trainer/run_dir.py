"""Run directories: one folder per run holding its resolved config, checkpoints and logs."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from trainer.config.compose import save_resolved_config

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
# Left in the run directory by trainer.requeue.RequeueOnSignal after its checkpoint; the batch script that
# launch.slurm_scripts writes requeues the job when it finds it.
REQUEUE_REQUEST = "requeue.request"
# Set by the launching process for the worker processes it starts, so all ranks share one run dir.
RUN_DIR_ENV = "TALKDIT_RUN_DIR"

log = logging.getLogger("talkdit.run_dir")


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


def _saved_step(path: Path) -> int | None:
    """Training step a checkpoint in the run directory holds, or ``None`` when it is incomplete or unreadable."""
    import torch

    m = re.fullmatch(r"step(\d+)\.ckpt", path.name)
    if m:  # periodic checkpoints are named after their step (trainer.runner.build_trainer)
        return int(m.group(1)) if path.is_file() or (path / "latest").is_file() else None
    if path.is_dir():  # DeepSpeed: the client state of the tag named in 'latest'
        latest = path / "latest"
        if not latest.is_file():
            return None
        tag = path / latest.read_text().strip()
        states = [tag / "mp_rank_00_model_states.pt", tag / "zero_pp_rank_0_mp_rank_00_model_states.pt"]
        path = next((p for p in states if p.is_file()), states[0])
    try:
        # mmap: tensors stay on disk, only the pickled metadata is parsed.
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception as err:  # a damaged file must not hide the intact ones beside it
        log.warning("resume=auto: ignoring %s (%s)", path, " ".join(str(err).split())[:200])
        return None


def auto_resume_checkpoint(cfg) -> Path | None:
    """For ``resume=auto``: the newest complete checkpoint of the run directory, or ``None`` (fresh start).

    Candidates are ``checkpoints/last.ckpt`` (periodic and final saves, and the save on SLURM's warning
    signal, :class:`trainer.requeue.RequeueOnSignal`) and the periodic ``step<n>.ckpt``. Both are written by
    rename, but a process killed between the periodic save and the ``last.ckpt`` copy leaves ``last.ckpt``
    one period behind, so the highest step wins (``last.ckpt`` on a tie). A DeepSpeed checkpoint is a
    folder, complete once its ``latest`` tag file exists.

    Args:
        cfg: The training config (its run directory is resolved as for the run itself).

    Returns:
        The checkpoint to continue from, or ``None`` when there is none yet.
    """
    folder = resolve_run_dir(cfg) / CHECKPOINT_DIR
    last = folder / "last.ckpt"
    candidates = [last, *sorted(folder.glob("step*.ckpt"))] if folder.is_dir() else []
    best: tuple[int, int] | None = None
    chosen = None
    for path in candidates:
        if not path.exists():
            continue
        step = _saved_step(path)
        if step is not None and (best is None or (step, path == last) > best):
            best, chosen = (step, path == last), path
    return chosen


def save_last_checkpoint(trainer, path: Path) -> None:
    """Save the trainer's state as ``path`` (``checkpoints/last.ckpt``) on every rank.

    Goes through the ModelCheckpoint's own last-save when it writes to the same folder, so that callback
    knows ``last.ckpt`` holds this step: it neither writes a second ``last-v1.ckpt`` at train end nor
    saves the same step again.

    Args:
        trainer: The Lightning trainer (every rank calls this; sharded strategies save their shard).
        path: The ``last.ckpt`` to write.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    keeper = trainer.checkpoint_callback
    if isinstance(keeper, ModelCheckpoint) and keeper.save_last and Path(keeper.dirpath) == path.parent:
        keeper._save_last_checkpoint(trainer, keeper._monitor_candidates(trainer))
    else:
        trainer.save_checkpoint(path)


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
