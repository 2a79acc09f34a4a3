"""The sbatch scripts ``python -m launch.slurm`` submits: a multi-node training run and a data-prep array.

Training: one script per run, ``srun`` with one task per GPU (or ``tasks_per_node`` CPU ranks),
``--signal=USR1@<s>`` plus ``--requeue`` (on USR1 the trainer checkpoints and the script requeues the job, see
:mod:`trainer.requeue`; the rerun continues with ``resume=auto``), writing into the run directory
``<run_root>/<experiment>/job<id>`` the batch log, per-rank logs, a code snapshot and the exit status of
every attempt. The trainer overrides are composed and validated with the trainer's own loader first, so a bad
one fails before anything is rendered.

Data prep: one array task per work unit of the plan; each task runs ``python -m data_prep.run ...
execution.unit_index=$SLURM_ARRAY_TASK_ID``.

The keys the scripts set themselves (:data:`MANAGED_TRAIN_KEYS`, :data:`MANAGED_PREP_KEYS`) are refused on
the command line.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from launch.cluster import ClusterConfig
from trainer.config.compose import load_train_config
from trainer.config.errors import ConfigError
from trainer.run_dir import REQUEUE_REQUEST

# The code the jobs run (put first on their PYTHONPATH, and snapshotted into the run directory).
REPO = Path(__file__).resolve().parents[1]
EXIT_STATUS_FILE = "exit_status.tsv"
# Keys of the trainer that the launcher sets from the job and the cluster; a user value would break resume
# (run_dir, resume) or disagree with what SLURM allocates (the strategy's process layout).
MANAGED_TRAIN_KEYS = {
    "run_dir": "the launcher names it <run_root>/<experiment>/job<SLURM job id>; set run_root instead",
    "resume": "the launcher passes resume=auto so a requeued job continues from its own run directory",
    "strategy.devices": "set by the cluster (cluster.gpus_per_node, or cluster.tasks_per_node on CPU)",
    "strategy.num_nodes": "set by the cluster (cluster.nodes)",
    "strategy.accelerator": "set by the cluster (gpu when cluster.gpus_per_node > 0, else cpu)",
}
MANAGED_PREP_KEYS = {
    "execution.unit_index": "each array task runs the unit $SLURM_ARRAY_TASK_ID",
    "execution.workers": "one unit per array task runs in one process",
}


def override_key(arg: str) -> str:
    """The key an override sets: ``+a.b=1`` -> ``a.b``."""
    return arg.lstrip("+~").split("=", 1)[0]


def refuse_managed(forwarded: list[str], managed: dict[str, str]) -> None:
    """Refuse an override of a key the launcher sets itself.

    Raises:
        ConfigError: Naming the key and who sets it.
    """
    for arg in forwarded:
        key = override_key(arg)
        if key in managed:
            raise ConfigError(key, arg.split("=", 1)[-1], f"is managed by launch.slurm: {managed[key]}")


def _sbatch_lines(options: list[tuple[str, object]]) -> list[str]:
    """``#SBATCH --key=value`` lines, skipping unset options; ``True`` renders a bare flag."""
    lines = []
    for key, value in options:
        if value is None or value is False:
            continue
        lines.append(f"#SBATCH --{key}" if value is True else f"#SBATCH --{key}={value}")
    return lines


def _env_lines(env: dict[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(str(value))}" for name, value in env.items()]


def _python(cluster: ClusterConfig) -> str:
    return cluster.python or sys.executable


def _common_setup(cluster: ClusterConfig, workdir: Path) -> list[str]:
    """Working directory, site setup and the environment both job kinds share."""
    lines = [
        # Relative paths in the overrides mean what they meant where the launcher ran.
        f"cd {shlex.quote(str(workdir))}",
        *cluster.setup,
        # The code that runs is the code the snapshot records, whatever the interpreter has installed.
        f"export PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}",
        "export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1",
        # One OpenMP pool per process sized to its cores; the default (all cores) oversubscribes the node.
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
        *_env_lines(cluster.env),
    ]
    return lines


def _snapshot_function() -> list[str]:
    """Bash function that records the code a job runs in ``$RUN_DIR/code`` once per job."""
    repo = shlex.quote(str(REPO))
    return [
        "snapshot_code() {",
        '  local dest="$RUN_DIR/code" tmp="$RUN_DIR/.code.tmp.$$"',
        # A requeued job keeps the snapshot of its first start: that is the code its checkpoints came from.
        '  [ -d "$dest" ] && return 0',
        '  rm -rf "$tmp" && mkdir -p "$tmp/tree" || return 1',
        f"  if git -C {repo} rev-parse --is-inside-work-tree >/dev/null 2>&1; then",
        f'    git -C {repo} rev-parse HEAD > "$tmp/commit.txt" &&',
        f'      git -C {repo} archive HEAD | tar -x -C "$tmp/tree" &&',
        f'      git -C {repo} diff HEAD --binary > "$tmp/code.diff" &&',
        f'      git -C {repo} ls-files --others --exclude-standard > "$tmp/untracked.txt" ||',
        '      { rm -rf "$tmp"; return 1; }',
        "  else",
        '    echo "not a git checkout: tree/ holds the package folders" > "$tmp/commit.txt"',
        f"    tar -C {repo} --exclude=__pycache__ -cf - conf trainer data_prep launch eval setup.cfg pyproject.toml"
        ' | tar -x -C "$tmp/tree" || { rm -rf "$tmp"; return 1; }',
        "  fi",
        '  mv -T "$tmp" "$dest"',
        "}",
    ]


@dataclass
class TrainJob:
    """A rendered training job.

    Attributes:
        script: The sbatch script text.
        experiment_dir: ``<run_root>/<experiment>`` (absolute); the run directory is ``job<id>`` inside it.
        overrides: The trainer overrides the script passes before the launcher-managed ones.
    """

    script: str
    experiment_dir: Path
    overrides: list[str]


def render_train_job(cluster: ClusterConfig, forwarded: list[str], workdir: Path | None = None) -> TrainJob:
    """Validate the trainer overrides and render the sbatch script of a training run.

    Args:
        cluster: The validated cluster config.
        forwarded: Trainer overrides from the command line (``experiment=...`` and others).
        workdir: Folder the job runs in (relative paths resolve against it); default the current one.

    Returns:
        The script and where its run directory goes.

    Raises:
        ConfigError: A forwarded override is invalid or names a key the launcher manages.
    """
    refuse_managed(forwarded, MANAGED_TRAIN_KEYS)
    workdir = Path(workdir or os.getcwd()).resolve()
    overrides = [*cluster.train_overrides, *forwarded]
    ranks, nodes = cluster.ranks_per_node, cluster.nodes
    managed = [
        "resume=auto",
        f"strategy.devices={ranks}",
        f"strategy.num_nodes={nodes}",
        f"strategy.accelerator={cluster.accelerator}",
    ]
    cfg = load_train_config([*overrides, *managed])
    run_root = Path(cfg.run_root)
    experiment_dir = (run_root if run_root.is_absolute() else workdir / run_root) / cfg.experiment_name
    if any(c.isspace() for c in str(experiment_dir)):
        # #SBATCH lines are split on whitespace.
        raise ConfigError("run_root", str(experiment_dir), "run_root/experiment_name must not contain spaces")
    run_dir = f"{shlex.quote(str(experiment_dir))}/job${{SLURM_JOB_ID}}"
    gpu = cluster.gpus_per_node > 0
    header = [
        "#!/bin/bash",
        f"# Rendered by `python -m launch.slurm` on {time.strftime('%Y-%m-%d %H:%M:%S')}: training run of "
        f"experiment {cfg.experiment_name} on cluster {cluster.name} ({nodes} node(s) x {ranks} rank(s)).",
        *_sbatch_lines(
            [
                ("job-name", f"{cluster.job_name}-{cfg.experiment_name}"),
                ("nodes", nodes),
                ("ntasks-per-node", ranks),
                ("gpus-per-node", cluster.gpus_per_node if gpu else None),
                ("cpus-per-task", cluster.cpus_per_task),
                ("mem", cluster.mem),
                ("time", cluster.time),
                ("partition", cluster.partition),
                ("account", cluster.account),
                ("qos", cluster.qos),
                ("constraint", cluster.constraint),
                ("exclusive", cluster.exclusive),
                # The warning signal: checkpoint and requeue (trainer.requeue, or Lightning's SLURM plugin).
                ("signal", f"USR1@{cluster.requeue_signal_seconds}" if cluster.requeue_signal_seconds else None),
                ("requeue", True),
                # A requeued job appends to its log instead of truncating what the earlier attempt wrote.
                ("open-mode", "append"),
                ("output", f"{experiment_dir}/job%j/slurm-%j.out"),
            ]
        ),
        *[f"#SBATCH {line}" for line in cluster.extra_sbatch],
    ]
    port = str(cluster.master_port) if cluster.master_port else "$((20000 + SLURM_JOB_ID % 20000))"
    command = [_python(cluster), "-m", "trainer.train", *overrides]
    srun = [
        "srun",
        # One failed rank ends the step instead of leaving the others blocked in a collective.
        "--kill-on-bad-exit=1",
        # srun of SLURM 22.05 does not inherit the batch allocation's --cpus-per-task.
        '--cpus-per-task="$SLURM_CPUS_PER_TASK"',
        '--output="$RUN_DIR/ranks/attempt${ATTEMPT}.rank%t.log"',
        "--open-mode=append",
    ]
    body = [
        # No -e: the exit status of the training step is recorded before the script exits with it.
        "set -uo pipefail",
        f"RUN_DIR={run_dir}",
        "ATTEMPT=${SLURM_RESTART_COUNT:-0}",
        'mkdir -p "$RUN_DIR/ranks"',
        f'rm -f "$RUN_DIR/{REQUEUE_REQUEST}"  # a request is for the attempt that wrote it',
        'echo "job $SLURM_JOB_ID attempt $ATTEMPT on $SLURM_JOB_NODELIST, $(date -Is)"',
        *_common_setup(cluster, workdir),
        # Rendezvous: rank 0 runs on the first node of the allocation.
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f"export MASTER_PORT={port}",
        *(_env_lines(cluster.nccl_env) if gpu else []),
        *_snapshot_function(),
        'snapshot_code || echo "warning: could not snapshot the code into $RUN_DIR/code" >&2',
        " ".join(srun)
        + " \\\n  "
        + " ".join(shlex.quote(c) for c in command)
        + ' \\\n  "run_dir=$RUN_DIR" '
        + " ".join(managed),
        "status=$?",
        'printf "%s\\t%s\\t%s\\t%s\\n" "$SLURM_JOB_ID" "$ATTEMPT" "$status" "$(date -Is)" \\',
        f'  >> "$RUN_DIR/{EXIT_STATUS_FILE}"',
        'echo "training step exited with status $status"',
        # trainer.requeue.RequeueOnSignal saved a checkpoint on the warning signal and stopped: put the job back
        # in the queue; the next attempt continues from that checkpoint (resume=auto).
        f'if [ -e "$RUN_DIR/{REQUEUE_REQUEST}" ]; then',
        f'  rm -f "$RUN_DIR/{REQUEUE_REQUEST}"',
        '  echo "checkpointed on the requeue signal: requeueing job $SLURM_JOB_ID"',
        '  scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$status"',
        "",
    ]
    return TrainJob(script="\n".join(header + body), experiment_dir=experiment_dir, overrides=overrides)


def render_data_prep_script(
    cluster: ClusterConfig, prep_args: list[str], num_units: int, output_dir: Path, workdir: Path | None = None
) -> str:
    """The sbatch script of a data-prep array job with ``num_units`` tasks.

    Args:
        cluster: The validated cluster config (``cluster.data_prep`` sizes the tasks).
        prep_args: ``data_prep.run`` overrides (validated by the caller).
        num_units: Work units of the plan; task ``i`` runs unit ``i``.
        output_dir: The data-prep output folder (absolute); logs go to ``<output_dir>/slurm/``.
        workdir: Folder the tasks run in; default the current one.

    Returns:
        The script text.
    """
    workdir = Path(workdir or os.getcwd()).resolve()
    res = cluster.data_prep
    throttle = f"%{res.max_parallel}" if res.max_parallel else ""
    header = [
        "#!/bin/bash",
        f"# Rendered by `python -m launch.slurm` on {time.strftime('%Y-%m-%d %H:%M:%S')}: data_prep array of "
        f"{num_units} work unit(s) on cluster {cluster.name}.",
        *_sbatch_lines(
            [
                ("job-name", f"{cluster.job_name}-data-prep"),
                ("array", f"0-{num_units - 1}{throttle}"),
                ("nodes", 1),
                ("ntasks", 1),
                ("cpus-per-task", res.cpus_per_task),
                ("gpus-per-task", res.gpus_per_task or None),
                ("mem", res.mem),
                ("time", res.time),
                ("partition", res.partition or cluster.partition),
                ("account", cluster.account),
                ("qos", cluster.qos),
                ("constraint", cluster.constraint),
                # A preempted task reruns; the unit it was on is redone, finished units are skipped.
                ("requeue", True),
                ("output", f"{output_dir}/slurm/%A_%a.out"),
            ]
        ),
        *[f"#SBATCH {line}" for line in cluster.extra_sbatch],
    ]
    command = [_python(cluster), "-m", "data_prep.run", *prep_args]
    body = [
        "set -euo pipefail",
        *_common_setup(cluster, workdir),
        " ".join(shlex.quote(c) for c in command)
        + ' execution.unit_index="${SLURM_ARRAY_TASK_ID}" execution.workers=1',
        "",
    ]
    return "\n".join(header + body)
