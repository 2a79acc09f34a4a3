"""A running local SLURM (:mod:`launch.local_slurm` starts one): its client commands, job states and teardown.

:class:`LocalSlurm` runs SLURM clients against the cluster (``SLURM_CONF`` pointing at its folder), polls job
states until they are final, waits for idle nodes and lets a requeued job start at once; :meth:`LocalSlurm.stop`
cancels the jobs, stops the daemons through their pid files and removes the nodes' network namespaces.
:func:`attach` is the handle of a cluster a previous ``start`` left running.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# Job states after which a job no longer runs nor waits (``wait`` returns once every array task is in one).
TERMINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}


class LocalSlurmStartError(RuntimeError):
    """The daemons did not come up; the message carries the tail of their logs."""


def binary(name: str) -> str:
    """The path of a SLURM, munge or network tool; ``/usr/sbin`` is not on every user's PATH."""
    found = shutil.which(name) or str(Path("/usr/sbin", name))
    return found


def _tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return f"({path.name}: no log)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path.name} ---\n" + "\n".join(text)


@dataclass
class LocalSlurm:
    """A running local cluster.

    Attributes:
        root: Its folder (config, key, state, logs).
        nodes: The node names (one node: this host's short name).
        cpus: CPUs each node offers.
        env: Environment for SLURM clients (``SLURM_CONF`` pointing at this cluster).
        namespaces: Network namespaces of a multi-node cluster (removed by :meth:`stop`).
    """

    root: Path
    nodes: list[str]
    cpus: int
    env: dict[str, str] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        """The first node."""
        return self.nodes[0]

    @property
    def conf(self) -> Path:
        """Its ``slurm.conf``."""
        return self.root / "slurm.conf"

    def logs(self, lines: int = 15) -> str:
        """The tail of every daemon log (for error messages)."""
        paths = sorted((self.root / "log").glob("*.log"))
        return "\n".join(_tail(p, lines) for p in paths) if paths else "(no daemon log)"

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        done = subprocess.run(list(cmd), capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """``scontrol show job`` records of a job (one per array task), as key/value dicts."""
        done = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        return [_parse_record(line) for line in done.stdout.splitlines() if line.strip()]

    def wait(self, job_id: str, timeout: float, poll: float = 1.0) -> list[dict[str, str]]:
        """Wait until the job (every array task) reached a final state.

        Returns:
            The final records (``JobState``, ``ExitCode``, ``Restarts``, ...).

        Raises:
            TimeoutError: The job is still queued or running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            records = self.jobs(job_id)
            if records and all(r.get("JobState") in TERMINAL_STATES for r in records):
                return records
            if time.monotonic() > deadline:
                states = [(r.get("JobId"), r.get("JobState"), r.get("Reason")) for r in records]
                raise TimeoutError(f"job {job_id} not finished after {timeout:.0f} s: {states}\n{self.logs(8)}")
            time.sleep(poll)

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until every node is idle (no job on it, ready for the next).

        Raises:
            LocalSlurmStartError: A node did not become idle in time (with the daemon logs).
        """
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            done = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False)
            states = done.stdout.split("\n") if done.returncode == 0 else []
            states = [line.strip() for line in states if line.strip()]
            if len(states) == len(self.nodes) and all(line.endswith(" idle") for line in states):
                return
            time.sleep(0.5)
        raise LocalSlurmStartError(f"nodes not idle after {timeout:.0f} s (sinfo: {states})\n{self.logs()}")

    def start_requeued_now(self, job_id: str, timeout: float = 60) -> None:
        """Let a requeued (pending) job start in two seconds instead of after SLURM's two-minute hold.

        The killed attempt must have left the node first, and the new start must fall in a later second
        than the requeue: slurmd refuses to launch a job whose credential was revoked in the same second
        ("already killed, do not launch batch job") and the job then fails instead of running.
        """
        self.wait_idle(timeout)
        self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now+2")

    def stop(self, remove: bool = True) -> None:
        """Cancel every job, stop the daemons this cluster started and (by default) delete its folder."""
        if (self.root / "slurmctld.pid").exists():
            queued = self.run("squeue", "-h", "-o", "%A", check=False).stdout.split()
            if queued:
                self.run("scancel", *sorted(set(queued)), check=False)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and self.run("squeue", "-h", check=False).stdout.strip():
                    time.sleep(0.5)
        # Node daemons first (they end job steps), then the controller, then the authentication daemon.
        for pid_file in [
            *sorted(self.root.glob("slurmd.*.pid")),
            self.root / "slurmctld.pid",
            self.root / "munged.pid",
        ]:
            _stop_pid(pid_file)
        remove_namespaces(self.namespaces)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def _parse_record(line: str) -> dict[str, str]:
    out = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep:
            out[key] = value
    return out


def _stop_pid(pid_file: Path, timeout: float = 15) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def remove_namespaces(namespaces: list[str]) -> None:
    """Remove the network namespaces of a multi-node cluster (those that exist)."""
    # Deleting a namespace deletes its veth ends, and with them their peers (the host's tdh<tag> too).
    for ns in namespaces:
        if Path("/run/netns", ns).exists():
            subprocess.run([binary("ip"), "netns", "del", ns], capture_output=True, timeout=30)


def attach(root: str | Path) -> LocalSlurm:
    """The cluster a previous ``start`` left running in ``root``."""
    root = Path(root)
    text = (root / "slurm.conf").read_text()
    nodes = re.findall(r"^NodeName=(\S+)", text, re.M)
    cpus = int(re.search(r"^NodeName=.*\bCPUs=(\d+)", text, re.M).group(1))
    ns_file = root / "namespaces"
    namespaces = ns_file.read_text().split() if ns_file.is_file() else []
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    return LocalSlurm(root=root, nodes=nodes, cpus=cpus, env=env, namespaces=namespaces)
