"""Render (and optionally submit) a SLURM array job running ``data_prep`` one work unit per task.

``python -m launch.data_prep_array input_dir=<dir> output_dir=<dir> [data_prep overrides]
[slurm.partition=...] [slurm.time=...] [slurm.max_parallel=N] [submit=true]``

The array has one task per unit of the plan (the same partition into units the local run uses); each
task runs ``python -m data_prep.run ... execution.unit_index=$SLURM_ARRAY_TASK_ID``, skips its unit if it
is already done, and the task that completes the last unit merges the ledger and writes the report.
Local and array runs therefore write identical outputs. The script lands in ``<output_dir>/slurm/``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from omegaconf import OmegaConf

from data_prep.run import load_config
from data_prep.units import array_size, list_inputs
from trainer.atomic import atomic_write_text
from trainer.config.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ArraySlurm:
    """Resources of one array task (``slurm.*`` on the command line)."""

    job_name: str = "talkdit-data-prep"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "04:00:00"
    cpus_per_task: int = 8
    mem: str = "32G"
    max_parallel: int | None = None  # array throttle (%N)
    extra: list[str] = field(default_factory=list)  # more "#SBATCH" lines, e.g. "--constraint=cpu"


def render_script(prep_args: list[str], num_units: int, output_dir: Path, slurm: ArraySlurm) -> str:
    """The sbatch script text for ``num_units`` array tasks."""
    throttle = f"%{slurm.max_parallel}" if slurm.max_parallel else ""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={slurm.job_name}",
        f"#SBATCH --array=0-{num_units - 1}{throttle}",
        f"#SBATCH --time={slurm.time}",
        f"#SBATCH --cpus-per-task={slurm.cpus_per_task}",
        f"#SBATCH --mem={slurm.mem}",
        f"#SBATCH --output={output_dir}/slurm/%A_%a.out",
        "#SBATCH --requeue",
    ]
    for key in ("partition", "account", "qos"):
        value = getattr(slurm, key)
        if value:
            lines.append(f"#SBATCH --{key}={value}")
    lines += [f"#SBATCH {x}" for x in slurm.extra]
    command = [sys.executable, "-m", "data_prep.run", *prep_args]
    lines += [
        "set -euo pipefail",
        f"cd {shlex.quote(str(REPO))}",
        "export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
        # One unit per task; the pool inside a task stays at one process per unit.
        " ".join(shlex.quote(c) for c in command)
        + ' execution.unit_index="${SLURM_ARRAY_TASK_ID}" execution.workers=1',
        "",
    ]
    return "\n".join(lines)


def _absolute(arg: str) -> str:
    key, sep, value = arg.partition("=")
    if sep and key in ("input_dir", "input_list", "output_dir") and value not in ("null", ""):
        return f"{key}={Path(value).resolve()}"
    return arg


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    launch_keys = {f"slurm.{f.name}" for f in fields(ArraySlurm)} | {"submit"}
    ours = [a for a in args if a.split("=", 1)[0] in launch_keys]
    # The script runs from the repository root: make the paths it is given absolute.
    prep_args = [_absolute(a) for a in args if a not in ours]
    try:
        opts = OmegaConf.merge(
            OmegaConf.create({"slurm": OmegaConf.structured(ArraySlurm), "submit": False}), OmegaConf.from_dotlist(ours)
        )
        slurm: ArraySlurm = OmegaConf.to_object(opts.slurm)
        cfg = load_config(prep_args)
        units = array_size(len(list_inputs(cfg)), cfg.execution.videos_per_unit)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if units == 0:
        print("error: no input video found", file=sys.stderr)
        return 2
    out = Path(cfg.output_dir)
    script = out / "slurm" / "data_prep_array.sbatch"
    atomic_write_text(script, render_script(prep_args, units, out, slurm))
    print(f"array of {units} tasks: {script}")
    if opts.submit:
        sbatch = shutil.which("sbatch")
        if sbatch is None:
            print("error: sbatch not found (submit=true needs a SLURM client)", file=sys.stderr)
            return 2
        done = subprocess.run([sbatch, str(script)], capture_output=True, text=True)
        print(done.stdout.strip() or done.stderr.strip())
        return done.returncode
    print(f"submit with: sbatch {script}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
