"""A real Slurm cluster on this machine: one slurmctld, one slurmd per emulated node.

Tests, the demo and benchmarks need a batch system that Parsl's own ``SlurmProvider`` can
submit to with ``sbatch``. :class:`SlurmCluster` runs Debian's Slurm (22.05, installed by
``scripts/setup_slurm.sh``) as child processes it controls:

- ``munged`` with a key of its own, in the run's temporary directory;
- ``slurmctld`` on the host, listening on the run's bridge address;
- one ``slurmd`` per node, each in its own network namespace under its own host name,
  with the bridge, namespaces and veths of :mod:`parsl_saga.local_cluster_net` (names
  ``ssb…``, ``ssv…``, ``slurm-<tag>-<node>``, so the local cluster's cleanup and this
  one's never touch each other's runs).

Every daemon runs in the foreground (``-D``), from a ``slurm.conf`` generated into the
temporary directory, which also holds the state, spool and log directories. Nothing under
``/etc`` is read or written, and no system service is started.

Nodes are :class:`~parsl_saga.local_cluster.ClusterNode`: ``workers`` becomes the node's
``CPUs``, ``speed`` a feature ``speed_<speed>`` (visible in ``sinfo`` and ``scontrol show
node``). Speeds are emulated as the local cluster emulates them, openly: a TaskProlog
exports ``PARSL_NODE_SPEED`` (read by :func:`parsl_saga.local_cluster.work`) and
``PARSL_CORES`` (the worker count HTEx's pool sizes itself from) into every job on the
node. Nothing is throttled behind the tasks' back.

Use::

    with SlurmCluster([ClusterNode("node1"), ClusterNode("node2", speed=2.0)]) as cluster:
        os.environ.update(cluster.env)           # SLURM_CONF for sbatch, squeue, scancel
        ... SlurmProvider(partition=cluster.partition, ...), HighThroughputExecutor(
                address=cluster.bridge_address, ...)

Leaving the ``with`` block (normally, by an exception or Ctrl-C) kills every daemon and
job, removes the namespaces, links and temporary directory; an ``atexit`` hook covers an
interpreter exit, and :func:`cleanup_stale` removes what a killed run left behind.
Planning on Slurm (nodes that exist only once a job starts) is not implemented yet.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from parsl_saga import local_cluster_net as net
from parsl_saga.local_cluster import ClusterNode, validate_nodes, work

logger = logging.getLogger(__name__)

__all__ = [
    "SLURM",
    "ClusterNode",
    "SlurmCluster",
    "SlurmDaemonError",
    "SlurmUnavailable",
    "cleanup_stale",
    "node_identity",
    "slurm_unavailable_reason",
    "speed_feature",
]

SLURM = net.RunNaming(bridge="ssb", veth="ssv", netns="slurm-", record="slurm-",
                      run_env="PARSL_SLURM_RUN", owner_env="PARSL_SLURM_OWNER")
SCRATCH_PREFIX = "parsl-slurm-"
SETUP_HINT = "run scripts/setup_slurm.sh as root (Debian: slurmctld, slurmd, slurm-client, munge)"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "sinfo", "squeue", "scontrol", "scancel")
SLURMD_PORT = 6818  # every slurmd has a namespace of its own, so they can share one port
LOG_TAIL_LINES = 25
# Job states after which a job runs no more (squeue/scontrol spellings).
TERMINAL_JOB_STATES = frozenset({
    "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
    "DEADLINE", "OUT_OF_MEMORY"})


class SlurmUnavailable(RuntimeError):
    """This machine cannot run the cluster: not root, or Slurm or munge not installed."""


class SlurmDaemonError(RuntimeError):
    """A daemon exited or did not become ready; the message ends with its log's last lines."""


def slurm_unavailable_reason() -> str | None:
    """Why a SlurmCluster cannot start here (and how to fix it), or None when it can."""
    if os.geteuid() != 0:
        return ("a SlurmCluster needs root (it builds network namespaces and runs slurmd "
                "and slurmctld as root); run as root")
    if not net.netns_available() or shutil.which("nsenter") is None:
        return ("a SlurmCluster needs the `ip` (iproute2), `unshare` and `nsenter` "
                "(util-linux) tools")
    missing = [tool for tool in (*DAEMONS, *CLIENTS) if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}: {SETUP_HINT}"
    return None


@dataclass
class _Daemon:
    """A daemon the cluster started, and the file its stdout and stderr go to."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def failure(self, problem: str) -> SlurmDaemonError:
        # The log goes with the run's directory, so its lines travel in the message.
        return SlurmDaemonError(f"{self.name} {problem}; the last lines of its log:\n"
                                f"{_tail(self.log)}")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


class SlurmCluster:
    """One slurmctld and one slurmd per node, with munge, on this machine (root only).

    :param nodes: the nodes; names become Slurm node names and host names
    :param partition: the one partition, holding every node (the default partition)
    :param start_timeout_s: how long the daemons may take to come up before it is an error
    """

    def __init__(self, nodes: Sequence[ClusterNode], *, partition: str = "parsl",
                 start_timeout_s: float = 60.0) -> None:
        self.nodes = validate_nodes(nodes)
        if not partition.isidentifier():
            raise ValueError(f"partition={partition!r}: use letters, digits and underscores")
        self.partition = partition
        self.start_timeout_s = start_timeout_s
        self.tag = net.new_tag()
        self._network = net.ClusterNetwork(self.tag, [
            net.NodeLink(n.name, i, n.latency_ms, n.bandwidth_mbit)
            for i, n in enumerate(self.nodes)], SLURM)
        self._daemons: list[_Daemon] = []
        self._tmpdir: Path | None = None
        self._started = self._closed = False

    # -- what the cluster looks like --------------------------------------------------------

    @property
    def dir(self) -> Path:
        """The run's temporary directory: slurm.conf, munge key, state, spool and logs."""
        if self._tmpdir is None:
            raise RuntimeError("the cluster is not started; use `with SlurmCluster(...)`")
        return self._tmpdir

    @property
    def conf_path(self) -> Path:
        return self.dir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """What Slurm's client commands (and so SlurmProvider) need in their environment."""
        return {"SLURM_CONF": str(self.conf_path)}

    @property
    def bridge_address(self) -> str:
        """The host's address on the nodes' bridge: slurmctld's, and where an interchange
        must listen for pools in the nodes to reach it."""
        self.dir  # noqa: B018 -- the clear error when not started: no address is chosen yet
        return self._network.bridge_address

    def netns_name(self, node: str) -> str:
        """The network namespace node *node*'s slurmd and jobs run in."""
        return self._network.netns(self._network.links[self._index(node)])

    def netns_inode(self, node: str) -> int:
        """The inode of *node*'s namespace, as ``readlink /proc/self/ns/net`` shows it there."""
        return os.stat(f"/run/netns/{self.netns_name(node)}").st_ino

    def _index(self, node: str) -> int:
        names = [n.name for n in self.nodes]
        if node not in names:
            raise ValueError(f"no node {node!r} in this cluster; its nodes are {names}")
        return names.index(node)

    # -- running Slurm commands -------------------------------------------------------------

    def run(self, *argv: str, timeout_s: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (``sinfo``, ``sbatch`` ...) against this cluster."""
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              env=os.environ | self.env, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"`{shlex.join(argv)}` failed ({proc.returncode}): "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def node_states(self) -> dict[str, str]:
        """Each node's state as sinfo reports it (``idle``, ``alloc``, ``down*`` ...)."""
        out = self.run("sinfo", "--noheader", "--Node", "--format=%N %t").stdout
        return dict(line.split(maxsplit=1) for line in out.splitlines() if line.strip())

    def job_state(self, job_id: str) -> str:
        """A job's state (``PENDING``, ``RUNNING``, ``COMPLETED`` ...) from scontrol."""
        out = self.run("scontrol", "--oneliner", "show", "job", job_id).stdout
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        return fields.get("JobState", "UNKNOWN")

    def wait_for_job(self, job_id: str, timeout_s: float = 60.0) -> str:
        """Poll until job *job_id* has ended; return its final state."""
        state = ""

        def ended() -> bool:
            nonlocal state
            state = self.job_state(job_id)
            return state in TERMINAL_JOB_STATES

        self._poll(ended, f"job {job_id} to end (last state {state or '?'})", timeout_s)
        return state

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Bring up munged, slurmctld and every slurmd; return once every node is idle.

        :raises SlurmUnavailable: not root, or Slurm or munge missing (says how to fix it)
        :raises SlurmDaemonError: a daemon exited or did not become ready (with its log)
        """
        if self._closed:
            raise RuntimeError(f"Slurm cluster {self.tag} is closed; make a new one")
        if self._started:
            return
        reason = slurm_unavailable_reason()
        if reason is not None:
            raise SlurmUnavailable(reason)
        self._started = True
        atexit.register(self.close)
        try:
            self._tmpdir = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{self.tag}-"))
            self._network.up()
            self._start_munged()
            self._write_config()
            self._start_slurmctld()
            for node in self.nodes:
                self._start_slurmd(node)
            self._poll(self._all_nodes_idle, f"all {len(self.nodes)} nodes to be idle",
                       self.start_timeout_s)
        except BaseException:
            self.close()
            raise
        logger.info("Slurm cluster %s up: nodes %s, conf %s", self.tag,
                    [n.name for n in self.nodes], self.conf_path)

    def close(self) -> None:
        """Kill every daemon and job, remove namespaces, links and files; idempotent."""
        if self._closed:
            return
        self._closed = True
        # slurmds first, so that no node is left to re-register with a dying controller.
        for daemon in reversed(self._daemons):
            _stop(daemon.proc)
        # Jobs and slurmstepds live in the namespaces: teardown empties those. This catches
        # anything of the run left on the host (slurmctld's slurmscriptd, say).
        net.kill_run_processes(self.tag, SLURM)
        self._network.down()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        atexit.unregister(self.close)

    # -- the daemons ----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> _Daemon:
        log_dir = self.dir / "log"
        log_dir.mkdir(exist_ok=True)
        log = log_dir / f"{name.replace(' ', '-')}.log"
        env = os.environ | self.env | {SLURM.run_env: self.tag,
                                        SLURM.owner_env: str(os.getpid())}
        with open(log, "wb") as out:
            # A session of its own makes the daemon a process group _stop() can kill whole,
            # and keeps a terminal's Ctrl-C from reaching it before close() runs.
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        daemon = _Daemon(name, proc, log)
        self._daemons.append(daemon)
        return daemon

    @property
    def _munge_socket(self) -> Path:
        return self.dir / "munge" / "munge.socket"

    def _start_munged(self) -> None:
        munge_dir = self.dir / "munge"
        # munged refuses a socket whose directories others cannot traverse ("execute
        # permissions for all required"): clients of every user connect to it. The key
        # stays readable by root alone.
        munge_dir.mkdir(mode=0o755)
        self.dir.chmod(0o755)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        daemon = self._spawn("munged", [
            "munged", "--foreground", f"--key-file={key}", f"--socket={self._munge_socket}",
            f"--pid-file={munge_dir / 'munged.pid'}", f"--seed-file={munge_dir / 'munged.seed'}",
            f"--log-file={munge_dir / 'munged.log'}"])
        self._poll(self._munge_socket.exists, "munged's socket", self.start_timeout_s, daemon)

    def _start_slurmctld(self) -> None:
        daemon = self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf_path)])
        self._poll(self._controller_up, "slurmctld to answer `scontrol ping`",
                   self.start_timeout_s, daemon)

    def _start_slurmd(self, node: ClusterNode) -> None:
        link = self._network.links[self._index(node.name)]
        (self.dir / "spool" / node.name).mkdir()
        argv = ["slurmd", "-D", "-f", str(self.conf_path), "-N", node.name]
        self._spawn(f"slurmd {node.name}", self._network.wrap(link, argv, host_sys=True))

    def _controller_up(self) -> bool:
        ping = self.run("scontrol", "ping", check=False)
        return ping.returncode == 0 and "is UP" in ping.stdout

    def _all_nodes_idle(self) -> bool:
        states = self.node_states()
        return all(states.get(n.name) == "idle" for n in self.nodes)

    def _poll(self, ready: Callable[[], bool], what: str, timeout_s: float,
              daemon: _Daemon | None = None) -> None:
        """Wait until *ready()*; fail as soon as any daemon has exited, naming it."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            for started in self._daemons:
                code = started.proc.poll()
                if code is not None:
                    raise started.failure(f"exited with code {code} while waiting for {what}")
            if time.monotonic() > deadline:
                blame = daemon or (self._daemons[-1] if self._daemons else None)
                problem = f"not ready after {timeout_s:.0f} s waiting for {what}"
                if blame is None:
                    raise SlurmDaemonError(problem)
                raise blame.failure(problem)
            time.sleep(0.2)

    # -- configuration ----------------------------------------------------------------------

    def _write_config(self) -> None:
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir()
        prolog = self.dir / "task_prolog.sh"
        prolog.write_text(self._task_prolog())
        prolog.chmod(0o755)
        self.conf_path.write_text(self._slurm_conf(prolog))

    def _task_prolog(self) -> str:
        """A TaskProlog: its ``export`` lines become the environment of every job's tasks."""
        # One variable per line: slurmstepd reads each line as `export NAME=rest-of-line`.
        cases = "\n".join(
            f"  {shlex.quote(n.name)}) echo export PARSL_NODE_SPEED={float(n.speed)!r};"
            f" echo export PARSL_CORES={n.workers} ;;" for n in self.nodes)
        return f'#!/bin/sh\ncase "$SLURMD_NODENAME" in\n{cases}\nesac\n'

    def _slurm_conf(self, prolog: Path) -> str:
        d = self.dir
        lines = [
            f"# Generated by parsl_saga.slurm_cluster for run {self.tag}; removed on exit.",
            f"ClusterName=ps{self.tag}",
            f"SlurmctldHost={socket.gethostname()}({self.bridge_address})",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={SLURMD_PORT}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self._munge_socket}",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool' / '%n'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'spool' / 'slurmd-%n.pid'}",
            # No cgroups, no accounting database: nothing outside the temporary directory.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SwitchType=switch/none",
            "MpiDefault=none",
            f"TaskProlog={prolog}",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            # The nodes share this machine's CPUs: trust the configured counts, not the probe.
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            "MinJobAge=300",
        ]
        for node in self.nodes:
            link = self._network.links[self._index(node.name)]
            lines.append(f"NodeName={node.name} NodeHostname={node.name} "
                         f"NodeAddr={self._network.node_address(link)} CPUs={node.workers} "
                         f"Features={speed_feature(node.speed)} State=UNKNOWN")
        lines.append(f"PartitionName={self.partition} Nodes=ALL Default=YES "
                     "MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"SlurmCluster(nodes={list(self.nodes)!r}, tag={self.tag!r})"


def speed_feature(speed: float) -> str:
    """The Slurm node feature that records a node's relative speed, e.g. ``speed_2.0``."""
    return f"speed_{float(speed)!r}"


def node_identity(work_s: float = 0.0,
                  parsl_resource_specification: dict[str, object] | None = None,
                  inputs: Sequence[object] = ()) -> dict[str, str]:
    """Do *work_s* seconds of reference-speed work (:func:`work`), then say where it ran.

    *inputs* are only waited for (Parsl resolves futures passed there), to build DAGs.

    Host name, network namespace (``net:[inode]``, as ``readlink /proc/self/ns/net``
    shows it) and the Slurm and Parsl variables of the job. Importable by worker pools,
    so it can be a Parsl app as it is: ``python_app(node_identity)``. Parsl passes a
    resource specification (a pin, say) only to apps that declare the parameter.
    """
    if work_s:
        work(work_s)
    keys = ("SLURMD_NODENAME", "SLURM_JOB_ID", "PARSL_NODE_NAME", "PARSL_NODE_SPEED",
            "PARSL_CORES")
    return {"host": socket.gethostname(), "netns": os.readlink("/proc/self/ns/net"),
            **{key: os.environ.get(key, "") for key in keys}}


def _free_port() -> int:
    # slurmctld listens on every address, so its port must be free on the host; two runs
    # at once each get their own.
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """TERM the process group, KILL it after *grace_s*: daemons leave children behind."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def cleanup_stale(force: bool = False) -> list[str]:
    """Remove what killed Slurm cluster runs left behind; return a line per removed object.

    A run is stale when the process that started it is gone; with *force* every Slurm
    cluster run on the machine goes, live ones included. Local cluster runs are not touched.
    """
    return net.cleanup_stale_runs(SLURM, SCRATCH_PREFIX, force)
