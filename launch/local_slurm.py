"""A throw-away SLURM cluster on this machine (for the launch tests, CI and trying launches).

``python -m launch.local_slurm start [--dir DIR] [--nodes N]`` brings one up and prints the
``SLURM_CONF`` to export; ``python -m launch.local_slurm stop --dir DIR`` cancels its jobs, stops its
daemons, removes its network namespaces and its folder. Tests use :func:`start_local_slurm` /
:meth:`LocalSlurm.stop` through fixtures. This module starts a cluster; the handle on a running one (client
commands, job states, teardown) is :mod:`launch.local_slurm_cluster`.

Everything lives in one folder: a private munge key and ``munged`` on its own socket (slurm.conf's
``AuthInfo=socket=...``), so the machine's own munge and SLURM, if any, are neither used nor disturbed;
``slurm.conf`` (``proctrack/linuxproc`` and ``task/none`` so no cgroup setup is needed,
``select/cons_tres`` on CPUs, free ports picked at start), state, spool, logs and pid files.

One node (the default) is this host on loopback, with the CPUs and memory ``slurmd -C`` reports. With
``nodes > 1`` every node is a ``slurmd`` in its own network, UTS and mount namespace (own IP address on
a private bridge, own hostname, an ``/etc/hosts`` naming all nodes bound over the real one), sharing the
machine's CPUs: multi-node jobs then really cross a network, e.g. DDP rendezvous on the first node.
It needs root (``slurmd`` starts job steps as the submitting user; namespaces) and the ``slurm-wlm`` and
``munge`` packages (``iproute2`` and ``util-linux`` for several nodes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launch.local_slurm_cluster import LocalSlurm, LocalSlurmStartError, attach, binary

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel")
NAMESPACE_TOOLS = ("ip", "nsenter", "unshare")
# Private addresses of multi-node clusters: 10.213.<tag>.0/24, controller .1, node i at .(10 + i).
_SUBNET = "10.213"


class LocalSlurmUnavailable(RuntimeError):
    """This machine cannot run a local SLURM (not root, or the packages are missing)."""


def missing_requirements(nodes: int = 1) -> str | None:
    """Why a local SLURM of ``nodes`` nodes cannot start here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "a local SLURM needs root (slurmd launches job steps as the submitting user)"
    needed = (*DAEMONS, *CLIENTS, *(NAMESPACE_TOOLS if nodes > 1 else ()))
    missing = [b for b in needed if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        return f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge iproute2 util-linux)"
    return None


def _free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (bound together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_hardware() -> tuple[str, int, int]:
    """``(node name, CPUs, RealMemory in MB)`` of this machine."""
    name = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem = 1024
    try:
        text = subprocess.run([binary("slurmd"), "-C"], capture_output=True, text=True, timeout=30).stdout
        name = re.search(r"NodeName=(\S+)", text).group(1)
        cpus = int(re.search(r"\bCPUs=(\d+)", text).group(1))
        mem = int(re.search(r"RealMemory=(\d+)", text).group(1))
    except (AttributeError, OSError, subprocess.SubprocessError):
        meminfo = Path("/proc/meminfo").read_text()
        mem = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) // 1024
    return name, cpus, mem


def _wait_for_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size > 0:
            return True
        time.sleep(0.1)
    return False


def write_slurm_conf(
    root: Path,
    controller: tuple[str, str],
    nodes: list[tuple[str, str]],
    cpus: int,
    mem_mb: int,
    ports: tuple[int, int],
) -> Path:
    """Write the ``slurm.conf`` of a local cluster rooted at ``root``.

    Args:
        root: The cluster's folder.
        controller: ``(host name, address)`` of slurmctld.
        nodes: ``(node name, address)`` of every slurmd.
        cpus: CPUs per node.
        mem_mb: RealMemory per node (MB).
        ports: ``(SlurmctldPort, SlurmdPort)``.

    Returns:
        The file.
    """
    conf = root / "slurm.conf"
    ctld_port, slurmd_port = ports
    lines = [
        f"ClusterName=talkdit{ctld_port}",
        # Addresses are given, so no DNS entry for this host or the nodes is needed.
        f"SlurmctldHost={controller[0]}({controller[1]})",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge/munge.socket",
        f"StateSaveLocation={root}/state",
        # %n: one spool, pid file and log per node daemon.
        f"SlurmdSpoolDir={root}/spool/%n",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.%n.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.%n.log",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        # No cgroup setup needed: processes are tracked by parentage, tasks are not bound.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        # Logical CPUs are the unit, so 2 one-CPU tasks fit a 1-core/2-thread machine too.
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/backfill",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        "ReturnToService=2",
        # The nodes keep the CPUs/memory written here even where slurmd detects a different topology.
        "SlurmdParameters=config_overrides",
        # Short grace between SIGTERM and SIGKILL when a job is cancelled or requeued (tests wait on it).
        "KillWait=5",
        "JobRequeue=1",
        *[f"NodeName={name} NodeAddr={addr} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN" for name, addr in nodes],
        f"PartitionName=local Nodes={','.join(name for name, _ in nodes)} Default=YES MaxTime=INFINITE State=UP",
    ]
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _ip(*args: str) -> None:
    done = subprocess.run([binary("ip"), *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise LocalSlurmStartError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _free_tag() -> int:
    for offset in range(250):
        tag = (os.getpid() + offset) % 250 + 1
        if not Path(f"/run/netns/talkdit{tag}hub").exists() and not Path(f"/sys/class/net/tdh{tag}").exists():
            return tag
    raise LocalSlurmStartError("no free 10.213.<tag>.0/24 network for a multi-node cluster")


def _create_network(root: Path, count: int) -> tuple[str, list[str], list[str]]:
    """A private bridge with one namespace per node; returns (controller address, node addresses, namespaces).

    The bridge lives in a namespace of its own: a bridge in the host namespace would pass through the
    host's netfilter rules (br_netfilter), which may drop forwarded traffic between the nodes.
    """
    tag = _free_tag()
    prefix = f"{_SUBNET}.{tag}"
    hub = f"talkdit{tag}hub"
    nodes = [f"talkdit{tag}n{i}" for i in range(1, count + 1)]
    namespaces = [hub, *nodes]
    # Written first, so a stop() after a half-built network still removes what exists.
    (root / "namespaces").write_text("\n".join(namespaces) + "\n")
    _ip("netns", "add", hub)
    _ip("-n", hub, "link", "add", "br0", "type", "bridge")
    _ip("-n", hub, "link", "set", "br0", "up")
    # The controller and the clients stay in the host namespace, on one more port of the bridge.
    _ip("link", "add", f"tdh{tag}", "type", "veth", "peer", "name", "up0", "netns", hub)
    _ip("addr", "add", f"{prefix}.1/24", "dev", f"tdh{tag}")
    _ip("link", "set", f"tdh{tag}", "up")
    _ip("-n", hub, "link", "set", "up0", "master", "br0", "up")
    addresses = []
    for i, ns in enumerate(nodes, start=1):
        _ip("netns", "add", ns)
        _ip("-n", hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", hub, "link", "set", f"p{i}", "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{prefix}.{10 + i}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        addresses.append(f"{prefix}.{10 + i}")
    return f"{prefix}.1", addresses, namespaces


def start_local_slurm(
    root: str | Path | None = None, nodes: int = 1, min_cpus: int = 2, timeout: float = 60
) -> LocalSlurm:
    """Start munged, slurmctld and ``nodes`` slurmd daemons and wait until every node is idle.

    Args:
        root: Folder for the cluster (created; default a new temporary folder).
        nodes: Node count; more than one puts each node in its own network namespace.
        min_cpus: CPUs the cluster offers at least in all (oversubscribing a smaller machine), so 2-rank jobs
            fit.
        timeout: Seconds to wait for the nodes to become idle.

    Returns:
        The running cluster; call :meth:`LocalSlurm.stop` to tear it down.

    Raises:
        LocalSlurmUnavailable: Not root, or a package is missing.
        LocalSlurmStartError: A daemon failed or a node did not come up (the logs' tails are included).
    """
    reason = missing_requirements(nodes)
    if reason:
        raise LocalSlurmUnavailable(reason)
    created = root is None or not Path(root).exists()
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="talkdit-slurm-"))
    root.mkdir(parents=True, exist_ok=True)
    # munged refuses a socket folder that others cannot traverse.
    root.chmod(0o755)
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(exist_ok=True)
    (root / "munge").chmod(0o755)
    key = root / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
    host, cpus, mem = _node_hardware()
    cpus = max(cpus, min_cpus)
    cluster = LocalSlurm(root=root, nodes=[host], cpus=cpus, env={**os.environ, "SLURM_CONF": str(root / "slurm.conf")})
    try:
        if nodes == 1:
            controller, node_addrs = (host, "127.0.0.1"), [(host, "127.0.0.1")]
        else:
            cluster.nodes = [f"talkdit-n{i}" for i in range(1, nodes + 1)]
            cluster.cpus = max(1, cpus // nodes)
            mem //= nodes
            ctld_addr, addrs, cluster.namespaces = _create_network(root, nodes)
            controller, node_addrs = (host, ctld_addr), list(zip(cluster.nodes, addrs))
            hosts = ["127.0.0.1 localhost", f"{ctld_addr} {host}", *[f"{a} {n}" for n, a in node_addrs]]
            (root / "hosts").write_text("\n".join(hosts) + "\n")
        for name in cluster.nodes:
            (root / "spool" / name).mkdir(exist_ok=True)
        write_slurm_conf(root, controller, node_addrs, cluster.cpus, mem, tuple(_free_ports(2)))
        _start(
            root / "munged.pid",
            [
                binary("munged"),
                f"--socket={root}/munge/munge.socket",
                f"--key-file={key}",
                f"--pid-file={root}/munged.pid",
                f"--log-file={root}/log/munged.log",
                f"--seed-file={root}/munge/munged.seed",
            ],
            cluster,
        )
        _start(root / "slurmctld.pid", [binary("slurmctld"), "-f", str(cluster.conf)], cluster)
        slurmd = [binary("slurmd"), "-f", str(cluster.conf)]
        if nodes == 1:
            _start(root / f"slurmd.{host}.pid", slurmd, cluster)
        for name, ns in zip(cluster.nodes if nodes > 1 else [], cluster.namespaces[1:]):
            # nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup tree slurmd checks.
            # slurmd finds its NodeName from the hostname; its job steps inherit the namespaces.
            inner = f"hostname {name} && mount --bind {root}/hosts /etc/hosts && exec {' '.join(slurmd)}"
            cmd = [binary("nsenter"), f"--net=/run/netns/{ns}", binary("unshare"), "--uts", "--mount"]
            _start(root / f"slurmd.{name}.pid", [*cmd, "--propagation", "private", "sh", "-c", inner], cluster)
        cluster.wait_idle(timeout)
    except LocalSlurmStartError:
        cluster.stop(remove=created)
        raise
    except Exception as err:  # a daemon binary that hangs or crashes: report it with the logs
        logs = cluster.logs()
        cluster.stop(remove=created)
        raise LocalSlurmStartError(f"{err}\n{logs}") from err
    return cluster


def _start(pid_file: Path, cmd: list[str], cluster: LocalSlurm) -> None:
    # Each daemon forks into the background and writes its pid file; the pid files are how stop() finds them.
    done = subprocess.run(cmd, capture_output=True, text=True, env=cluster.env, timeout=60)
    if done.returncode != 0 or not _wait_for_file(pid_file, 20):
        raise LocalSlurmStartError(
            f"{Path(cmd[0]).name} did not start (exit {done.returncode}): {(done.stderr or done.stdout).strip()}\n"
            f"{cluster.logs()}"
        )


def main(argv: list[str] | None = None) -> int:
    """Console entry point: ``start [--dir DIR] [--nodes N]`` or ``stop --dir DIR``."""
    parser = argparse.ArgumentParser(prog="python -m launch.local_slurm", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--dir", help="the cluster's folder (start: default a new temporary folder)")
    parser.add_argument("--nodes", type=int, default=1, help="node count (> 1: one network namespace per node)")
    args = parser.parse_args(argv)
    if args.action == "start":
        try:
            cluster = start_local_slurm(args.dir, nodes=args.nodes)
        except (LocalSlurmUnavailable, LocalSlurmStartError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(
            f"local SLURM up: nodes {', '.join(cluster.nodes)} with {cluster.cpus} CPU(s) each, folder {cluster.root}"
        )
        print(f"export SLURM_CONF={cluster.conf}")
        print(f"stop with: python -m launch.local_slurm stop --dir {cluster.root}")
        return 0
    if not args.dir or not (Path(args.dir) / "slurm.conf").is_file():
        print("error: stop needs --dir <folder of a cluster started with start>", file=sys.stderr)
        return 1
    attach(args.dir).stop()
    print(f"stopped and removed {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
