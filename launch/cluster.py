"""Cluster configs for ``launch.slurm``: what a SLURM cluster offers and how jobs ask for it.

``conf/cluster/<name>.yaml`` files are typed by :class:`ClusterConfig` (Hydra structured config) and
picked with ``cluster=<name>``; any field can be overridden as ``cluster.<field>=...``. Every rule is
checked before a script is rendered, and an error names the key and the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from omegaconf import MISSING

from trainer.config.errors import ConfigError

# SLURM --time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
# SLURM --mem: an integer with an optional unit (K, M, G, T); 0 asks for all memory of the node.
_MEM = re.compile(r"^\d+[KMGT]?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JOB_KINDS = ("train", "data_prep")


@dataclass
class DataPrepResources:
    """Resources of one data-prep array task (one work unit, one process, one node)."""

    cpus_per_task: int = 8  # decoding, scene and face analysis run on these cores
    gpus_per_task: int = 0  # Whisper/VAE features on a GPU when > 0 (data_prep picks the device itself)
    mem: str | None = "32G"  # per task (SLURM --mem; the task is alone on its node allocation)
    time: str = "04:00:00"  # per unit; a unit is execution.videos_per_unit videos
    partition: str | None = None  # defaults to the cluster's partition
    max_parallel: int | None = None  # array throttle (--array=0-N%max_parallel); None = as many as fit


@dataclass
class ClusterConfig:
    """A SLURM cluster and the resources a training job asks of it.

    Training runs ``nodes x ranks_per_node`` processes through ``srun``: one task per GPU on GPU clusters
    (``gpus_per_node > 0``, NCCL), ``tasks_per_node`` CPU processes otherwise (gloo).
    """

    name: str = MISSING  # the cluster config's name (the option of the cluster group)
    nodes: int = 1  # nodes of a training job
    gpus_per_node: int = 0  # 0 = a CPU cluster
    tasks_per_node: int | None = None  # ranks per node; None = gpus_per_node (GPU) or 1 (CPU)
    cpus_per_task: int = 1  # cores per rank (data loader workers, OMP threads)
    mem: str | None = None  # per node (SLURM --mem), e.g. "0" (all), "480G"; None = the partition's default
    time: str = "24:00:00"  # wall-clock limit of one job attempt (a requeued job starts a new attempt)
    partition: str | None = None  # SLURM partition (--partition)
    account: str | None = None  # SLURM account (--account)
    qos: str | None = None  # SLURM quality of service (--qos)
    constraint: str | None = None  # node features, e.g. "h100"
    exclusive: bool = False  # whole nodes (no other job shares them)
    job_name: str = "talkdit"  # prefix; the job is named <job_name>-<experiment> or <job_name>-data-prep
    python: str | None = None  # interpreter on the compute nodes; None = the one that renders the script
    master_port: int | None = None  # rendezvous port; None = 20000 + job id mod 20000 (no clash on shared nodes)
    requeue_signal_seconds: int = 120  # USR1 this long before the time limit: checkpoint and requeue
    setup: list[str] = field(default_factory=list)  # shell lines before launch (module load, venv activation)
    env: dict[str, str] = field(default_factory=dict)  # exported on every cluster
    nccl_env: dict[str, str] = field(default_factory=dict)  # exported on GPU clusters only
    extra_sbatch: list[str] = field(default_factory=list)  # more "#SBATCH" options, e.g. "--mail-type=END"
    train_overrides: list[str] = field(default_factory=list)  # trainer overrides this cluster always needs
    data_prep: DataPrepResources = field(default_factory=DataPrepResources)

    @property
    def ranks_per_node(self) -> int:
        """Training processes per node: one per GPU, or ``tasks_per_node`` CPU processes."""
        if self.gpus_per_node > 0:
            return self.gpus_per_node
        return self.tasks_per_node or 1

    @property
    def accelerator(self) -> str:
        """Lightning accelerator of the training processes (``gpu`` or ``cpu``)."""
        return "gpu" if self.gpus_per_node > 0 else "cpu"


@dataclass
class LaunchConfig:
    """``conf/launch.yaml``: what to launch and where (the keys ``python -m launch.slurm`` keeps for itself)."""

    job: str = MISSING  # train or data_prep
    dry_run: bool = False  # render the script and print where it is; do not submit
    cluster: ClusterConfig = MISSING


def time_to_seconds(value: str) -> int | None:
    """Seconds in a SLURM ``--time`` value, or ``None`` when it is not in a SLURM format.

    Args:
        value: e.g. ``"90"`` (minutes), ``"30:00"`` (MM:SS), ``"04:00:00"``, ``"2-00:00:00"``.

    Returns:
        The limit in seconds.
    """
    m = _TIME.match(value.strip())
    if not m:
        return None
    days, a, b, c = m.groups()
    days = int(days or 0)
    if days and b is None:  # D-HH
        h, mi, s = int(a), 0, 0
    elif days:  # D-HH:MM or D-HH:MM:SS
        h, mi, s = int(a), int(b), int(c or 0)
    elif b is None:  # minutes
        h, mi, s = 0, int(a), 0
    elif c is None:  # MM:SS
        h, mi, s = 0, int(a), int(b)
    else:  # HH:MM:SS
        h, mi, s = int(a), int(b), int(c)
    return ((days * 24 + h) * 60 + mi) * 60 + s


def _require(cond: bool, key: str, value: object, rule: str) -> None:
    if not cond:
        raise ConfigError(key, value, rule)


def _check_time(key: str, value: str) -> int:
    seconds = time_to_seconds(value)
    _require(
        seconds is not None and seconds > 0,
        key,
        value,
        "must be a positive SLURM time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS",
    )
    return seconds


def _check_word(key: str, value: str | None) -> None:
    if value is not None:
        _require(bool(value) and not any(c.isspace() for c in value), key, value, "must be one word (no spaces)")


def _check_env(key: str, env: dict[str, str]) -> None:
    for name in env:
        _require(bool(_ENV_NAME.match(name)), f"{key}.{name}", name, "must be a shell variable name")


def validate_cluster(c: ClusterConfig) -> None:
    """Check the rules of a cluster config that its types cannot express.

    Args:
        c: The composed cluster config.

    Raises:
        ConfigError: Naming the first ``cluster.*`` key that breaks a rule.
    """
    _require(c.nodes >= 1, "cluster.nodes", c.nodes, "must be >= 1")
    _require(c.gpus_per_node >= 0, "cluster.gpus_per_node", c.gpus_per_node, "must be >= 0 (0 = CPU nodes)")
    if c.tasks_per_node is not None:
        _require(c.tasks_per_node >= 1, "cluster.tasks_per_node", c.tasks_per_node, "must be >= 1")
        _require(
            c.gpus_per_node == 0 or c.tasks_per_node == c.gpus_per_node,
            "cluster.tasks_per_node",
            c.tasks_per_node,
            f"must equal cluster.gpus_per_node={c.gpus_per_node} (one training process per GPU) or be null",
        )
    _require(c.cpus_per_task >= 1, "cluster.cpus_per_task", c.cpus_per_task, "must be >= 1")
    if c.mem is not None:
        _require(bool(_MEM.match(c.mem)), "cluster.mem", c.mem, "must be a SLURM memory size such as 0, 480G, 64000M")
    seconds = _check_time("cluster.time", c.time)
    _require(
        0 <= c.requeue_signal_seconds < seconds,
        "cluster.requeue_signal_seconds",
        c.requeue_signal_seconds,
        f"must be >= 0 and shorter than cluster.time ({seconds} s), or USR1 would arrive as the job starts",
    )
    for key in ("partition", "account", "qos", "constraint", "job_name"):
        _check_word(f"cluster.{key}", getattr(c, key))
    if c.python is not None:
        _require(bool(c.python.strip()), "cluster.python", c.python, "must name an interpreter or be null")
    if c.master_port is not None:
        _require(1024 <= c.master_port <= 65535, "cluster.master_port", c.master_port, "must be in [1024, 65535]")
    _check_env("cluster.env", c.env)
    _check_env("cluster.nccl_env", c.nccl_env)
    for i, line in enumerate(c.extra_sbatch):
        _require(
            line.startswith("-"),
            f"cluster.extra_sbatch[{i}]",
            line,
            "must be an sbatch option such as --mail-type=END (without '#SBATCH')",
        )
    for i, ov in enumerate(c.train_overrides):
        _require("=" in ov, f"cluster.train_overrides[{i}]", ov, "must be a key=value trainer override")
    d = c.data_prep
    _require(d.cpus_per_task >= 1, "cluster.data_prep.cpus_per_task", d.cpus_per_task, "must be >= 1")
    _require(d.gpus_per_task >= 0, "cluster.data_prep.gpus_per_task", d.gpus_per_task, "must be >= 0")
    if d.mem is not None:
        _require(bool(_MEM.match(d.mem)), "cluster.data_prep.mem", d.mem, "must be a SLURM memory size such as 32G")
    _check_time("cluster.data_prep.time", d.time)
    _check_word("cluster.data_prep.partition", d.partition)
    if d.max_parallel is not None:
        _require(d.max_parallel >= 1, "cluster.data_prep.max_parallel", d.max_parallel, "must be >= 1 or null")


def validate_launch(cfg: LaunchConfig) -> None:
    """Check the launch keys (``job``, ``cluster.*``).

    Raises:
        ConfigError: Naming the first key that breaks a rule.
    """
    _require(cfg.job in _JOB_KINDS, "job", cfg.job, f"must be one of {', '.join(_JOB_KINDS)}")
    validate_cluster(cfg.cluster)
