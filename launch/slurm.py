"""Render and submit SLURM jobs: multi-node training runs and data-prep array jobs.

``python -m launch.slurm job=train experiment=<name> cluster=<name> [dry_run=true] [cluster.<field>=...]
[trainer overrides]`` and ``python -m launch.slurm job=data_prep cluster=<name> input_dir=<dir>
output_dir=<dir> [data_prep overrides]``.

The launch keys (``job``, ``dry_run``, ``cluster``, ``cluster.*``; ``conf/launch.yaml``) are split from
the rest, which is forwarded to the job. The forwarded overrides are composed and validated with the
job's own loader before anything is rendered, so a bad override fails in seconds, not after a queue wait.
The scripts themselves (srun layout, requeue on USR1, code snapshot) are written by
:mod:`launch.slurm_scripts`.

Training: the run directory ``<run_root>/<experiment>/job<id>`` holds the script, this launch's record
(``launch.yaml``), the batch log, per-rank logs, a code snapshot, the exit status of every attempt and
(written by the trainer) the resolved ``config.yaml``. The job is submitted on hold, its run directory is
created under the id SLURM gave it, and then it is released: the batch log can only go to a folder that
exists when the job starts.

Data prep: one array task per work unit of the plan (the same partition into units the local run uses);
a rerun skips finished units, and the task that completes the last unit merges the ledger and writes the
report, so local and array runs write identical outputs. The script lands in ``<output_dir>/slurm/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from launch.cluster import LaunchConfig, validate_launch
from launch.slurm_scripts import (
    MANAGED_PREP_KEYS,
    TrainJob,
    override_key,
    refuse_managed,
    render_data_prep_script,
    render_train_job,
)
from trainer.atomic import atomic_write_text
from trainer.config.cli import Command, one_line, run_command
from trainer.config.compose import compose_config, load_config, register_schema

LAUNCH_KEYS = ("job", "dry_run", "cluster")
TRAIN_SCRIPT = "train.sbatch"
DATA_PREP_SCRIPT = "data_prep.sbatch"
LAUNCH_RECORD = "launch.yaml"

_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        register_schema("launch_schema", LaunchConfig)
        _registered = True


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Split command-line overrides into launch keys and those forwarded to the job.

    Args:
        args: ``key=value`` overrides as typed (``+``/``~`` prefixes allowed).

    Returns:
        ``(launch overrides, forwarded overrides)``, each in the order given.
    """
    ours = [a for a in args if override_key(a).split(".", 1)[0] in LAUNCH_KEYS]
    return ours, [a for a in args if a not in ours]


def load_launch_config(overrides: list[str]) -> LaunchConfig:
    """Compose and validate ``conf/launch.yaml`` with the launch overrides.

    Args:
        overrides: e.g. ``["job=train", "cluster=generic_8xh100", "cluster.nodes=4"]``.

    Returns:
        The typed launch config.

    Raises:
        ConfigError: Naming the key that is unknown, mistyped, missing or breaks a rule.
    """
    _register()
    obj = load_config("launch", overrides)
    assert isinstance(obj, LaunchConfig)
    validate_launch(obj)
    return obj


def _job_config_yaml(args: list[str]) -> str:
    """``--cfg job``: the launch config, then the resolved config of the job it would run."""
    ours, forwarded = split_args(args)
    cfg = load_launch_config(ours)
    launch = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    if cfg.job == "train":
        job = compose_config("train", [*cfg.cluster.train_overrides, *forwarded])
    else:
        from data_prep.config import register

        register()
        job = compose_config("data_prep", forwarded)
    resolved = OmegaConf.to_yaml(OmegaConf.to_container(job, resolve=True, throw_on_missing=False))
    module = "trainer.train" if cfg.job == "train" else "data_prep.run"
    return f"# launch (conf/launch.yaml)\n{launch}---\n# the job: python -m {module}\n{resolved}"


COMMAND = Command(
    module="launch.slurm",
    config_name="launch",
    synopsis="job=train|data_prep cluster=<name> [dry_run=true] [cluster.<field>=...] [job overrides ...]",
    summary="""Render and submit SLURM jobs: multi-node training runs (one rank per GPU through srun, requeued on
preemption and resumed from the run directory named after the job id) and data-prep arrays (one task per work
unit; the task finishing the last unit merges the ledger). The job's overrides are checked with the job's own
rules before anything is rendered.""",
    examples=(
        "python -m launch.slurm job=train experiment=edityourself_stage1 cluster=generic_8xh100 cluster.nodes=4",
        "python -m launch.slurm job=data_prep cluster=generic_8xh100 input_dir=/data/raw output_dir=/data/prep",
        "python -m launch.slurm job=train experiment=demo cluster=local dry_run=true 'data.shards=...'",
    ),
    notes="""Every argument that is not a launch key (job, dry_run, cluster, cluster.*) goes to the job: see
python -m trainer.train --help and python -m data_prep.run --help for those keys. Keys the launcher sets itself
are refused: run_dir, resume, strategy.devices, strategy.num_nodes, strategy.accelerator (train);
execution.unit_index, execution.workers (data_prep).""",
    register=_register,
    own_overrides=lambda args: split_args(args)[0],
    config_yaml=_job_config_yaml,
)


def _sbatch() -> str:
    found = shutil.which("sbatch")
    if found is None:
        raise RuntimeError(
            "sbatch not found on PATH: submitting needs a SLURM client (a login node, or "
            "`python -m launch.local_slurm start`); dry_run=true only renders the script"
        )
    return found


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def _job_id(parsable: str) -> str:
    # --parsable prints "<id>" or "<id>;<cluster>".
    job = parsable.split(";", 1)[0].strip()
    if not re.fullmatch(r"\d+", job):
        raise RuntimeError(f"sbatch printed no job id: {parsable!r}")
    return job


def _launch_record(cfg: LaunchConfig, forwarded: list[str], argv: list[str]) -> str:
    record = {
        "argv": argv,
        "job": cfg.job,
        "forwarded_overrides": forwarded,
        "cluster": OmegaConf.to_container(OmegaConf.structured(cfg.cluster)),
        "rendered_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return OmegaConf.to_yaml(OmegaConf.create(record))


def submit_train(job: TrainJob, record: str) -> tuple[str, Path]:
    """Submit a rendered training job: on hold, create its run directory, then release it.

    Args:
        job: The rendered job.
        record: Text of ``launch.yaml`` for the run directory.

    Returns:
        ``(job id, run directory)``.

    Raises:
        RuntimeError: ``sbatch`` is missing or SLURM refused the job (its message is included).
    """
    sbatch = _sbatch()
    job.experiment_dir.mkdir(parents=True, exist_ok=True)
    staged = job.experiment_dir / f".submit-{os.getpid()}-{time.time_ns()}.sbatch"
    atomic_write_text(staged, job.script)
    try:
        job_id = _job_id(_run([sbatch, "--hold", "--parsable", str(staged)]))
    except Exception:
        staged.unlink(missing_ok=True)
        raise
    run_dir = job.experiment_dir / f"job{job_id}"
    try:
        (run_dir / "ranks").mkdir(parents=True, exist_ok=True)
        staged.replace(run_dir / TRAIN_SCRIPT)
        atomic_write_text(run_dir / LAUNCH_RECORD, record)
        _run(["scontrol", "release", job_id])
    except Exception:
        # A held job nobody releases would sit in the queue forever.
        subprocess.run(["scancel", job_id], capture_output=True)
        raise
    return job_id, run_dir


def _main_train(cfg: LaunchConfig, forwarded: list[str], argv: list[str]) -> int:
    if not cfg.dry_run:
        _sbatch()  # fail before rendering when nothing could be submitted
    job = render_train_job(cfg.cluster, forwarded)
    record = _launch_record(cfg, forwarded, argv)
    if cfg.dry_run:
        out = job.experiment_dir / "dry_run"
        atomic_write_text(out / TRAIN_SCRIPT, job.script)
        atomic_write_text(out / LAUNCH_RECORD, record)
        print(f"rendered: {out / TRAIN_SCRIPT}")
        print("dry run: not submitted (the same command without dry_run=true submits it)")
        return 0
    job_id, run_dir = submit_train(job, record)
    print(f"rendered: {run_dir / TRAIN_SCRIPT}")
    print(f"submitted job {job_id}: run directory {run_dir} (batch log slurm-{job_id}.out, ranks/ per-rank logs)")
    return 0


def _main_data_prep(cfg: LaunchConfig, forwarded: list[str]) -> int:
    from data_prep.run import load_config
    from data_prep.units import array_size, list_inputs

    if not cfg.dry_run:
        _sbatch()
    refuse_managed(forwarded, MANAGED_PREP_KEYS)
    prep = load_config(forwarded)
    units = array_size(len(list_inputs(prep)), prep.execution.videos_per_unit)
    if units == 0:
        raise FileNotFoundError("no input video found (input_dir / input_list)")
    out = Path(prep.output_dir).resolve()
    script = out / "slurm" / DATA_PREP_SCRIPT
    atomic_write_text(script, render_data_prep_script(cfg.cluster, forwarded, units, out))
    print(f"rendered: {script} (array of {units} task(s))")
    if cfg.dry_run:
        print(f"dry run: not submitted (submit with: sbatch {script})")
        return 0
    job_id = _job_id(_run([_sbatch(), "--parsable", str(script)]))
    print(f"submitted job {job_id}: array of {units} task(s), logs in {out / 'slurm'}")
    return 0


def _launch(args: list[str]) -> int:
    ours, forwarded = split_args(args)
    cfg = load_launch_config(ours)
    if cfg.job == "train":
        return _main_train(cfg, forwarded, args)
    return _main_data_prep(cfg, forwarded)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; a bad override exits with status 2, a refused submission with 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_command(COMMAND, args, _launch)
    except RuntimeError as err:  # sbatch missing or refusing: the input was fine, the cluster said no
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
