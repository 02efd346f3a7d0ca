"""A local multi-node cluster: one HighThroughputExecutor worker pool per named node.

Tests, the demo and benchmarks need several *nodes* with distinct names, slot counts and
speeds, on one machine. :class:`LocalClusterProvider` is a Parsl execution provider whose
blocks are those nodes: block *i* runs on the first node that has no live pool (so a pool
that dies is replaced on the same node), and every pool gets

- ``PARSL_NODE_NAME``: the node's name, which the fork's worker pool reports to the
  interchange when it registers and which tasks may read;
- ``PARSL_NODE_SPEED``: the node's relative speed, read by :func:`work` so heterogeneous
  clusters are emulated openly rather than by hidden throttling;
- ``PARSL_CORES``: the node's worker count. Parsl's pool sizes itself from it
  (``cores / cores_per_worker``), which is how nodes get different worker counts from one
  launch command without rewriting it.

Isolation:

- ``"netns"`` (root): each node in its own network namespace with its own address, on a
  bridge private to the run, and its own host name (``unshare --uts``); optional ``tc``
  latency and bandwidth per link. See :mod:`parsl_saga.local_cluster_net`.
- ``"process"``: plain processes on the host that differ only in their environment.
- ``"auto"``: ``"netns"`` when running as root with ``ip`` and ``unshare``, else ``"process"``.

Everything above the provider (executor, interchange, tasks) runs the same code either way.

Use :func:`cluster_executor` to get an executor configured for a cluster::

    nodes = [ClusterNode("node-a", workers=2), ClusterNode("node-b", workers=1, speed=2.0)]
    with parsl.load(Config(executors=[cluster_executor("cluster", nodes)])):
        ...

The executor brings the cluster up in ``start()`` and tears it down in ``shutdown()``; an
``atexit`` hook and :meth:`LocalClusterProvider.close` cover the other ways out, and
:func:`cleanup_stale` removes what a killed run left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from parsl.executors import HighThroughputExecutor
from parsl.jobs.states import JobState, JobStatus
from parsl.providers.base import ExecutionProvider
from parsl.providers.errors import SubmitException

try:
    from parsl.providers.base import GraphNode as ParslGraphNode
except ImportError:  # stock Parsl (benchmark baseline): no DAG planning asks for nodes
    ParslGraphNode = None  # type: ignore[assignment,misc]

from parsl_saga import local_cluster_net as net

logger = logging.getLogger(__name__)

__all__ = [
    "ClusterNode",
    "GraphNode",
    "Isolation",
    "LocalClusterExecutor",
    "LocalClusterProvider",
    "cleanup_stale",
    "cluster_executor",
    "scratch_dirs",
    "work",
]

Isolation = Literal["auto", "netns", "process"]

NODE_NAME_ENV = "PARSL_NODE_NAME"
# Pool logs go to <tmp>/parsl-cluster-<run tag>-*, unless the provider has a script_dir.
SCRATCH_PREFIX = "parsl-cluster-"
NODE_SPEED_ENV = "PARSL_NODE_SPEED"
LOOPBACK = "127.0.0.1"
MAX_NODES = 253  # addresses in the /24 after the bridge's
# A node name is also its host name and part of its namespace name: one DNS label.
_NODE_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ClusterNode:
    """One emulated node: its name, worker slots, relative speed and optional link shaping.

    ``latency_ms`` and ``bandwidth_mbit`` apply to each direction of the node's link to the
    bridge and need ``netns`` isolation.
    """

    name: str
    workers: int = 1
    speed: float = 1.0
    latency_ms: float = 0.0
    bandwidth_mbit: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NODE_NAME_RE.match(self.name):
            raise ValueError(
                f"node name {self.name!r} is not usable: it becomes the node's host name, so use "
                "1-63 letters, digits and inner hyphens, e.g. 'node-a'")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ValueError(f"node {self.name!r}: workers={self.workers!r} must be an int >= 1")
        if not _finite(self.speed) or self.speed <= 0:
            raise ValueError(f"node {self.name!r}: speed={self.speed!r} must be a finite "
                             "number > 0 (1.0 is the reference speed)")
        if not _finite(self.latency_ms) or self.latency_ms < 0:
            raise ValueError(f"node {self.name!r}: latency_ms={self.latency_ms!r} must be a "
                             "finite number >= 0")
        if self.bandwidth_mbit is not None and (
                not _finite(self.bandwidth_mbit) or self.bandwidth_mbit <= 0):
            raise ValueError(f"node {self.name!r}: bandwidth_mbit={self.bandwidth_mbit!r} must "
                             "be None (unlimited) or a finite number > 0")

    @property
    def shaped(self) -> bool:
        return self.latency_ms > 0 or self.bandwidth_mbit is not None


@dataclass(frozen=True)
class GraphNode:
    """A node as a scheduler sees it: where tasks can go, how many at once, how fast."""

    name: str
    slots: int
    speed: float
    latency_ms: float = 0.0
    bandwidth_mbit: float | None = None


def validate_nodes(nodes: Sequence[ClusterNode]) -> tuple[ClusterNode, ...]:
    """The nodes as a tuple, or a ValueError that says what is wrong and how to fix it."""
    if isinstance(nodes, ClusterNode) or not isinstance(nodes, Sequence):
        raise ValueError("nodes must be a list of ClusterNode, e.g. [ClusterNode('node-a')]")
    if not nodes:
        raise ValueError("a cluster needs at least one node: pass nodes=[ClusterNode('node-a')]")
    if len(nodes) > MAX_NODES:
        raise ValueError(f"{len(nodes)} nodes: at most {MAX_NODES} fit one cluster's /24")
    for node in nodes:
        if not isinstance(node, ClusterNode):
            raise ValueError(f"nodes must be ClusterNode instances, got {node!r}")
    seen: set[str] = set()
    for node in nodes:
        # Host names compare case-insensitively, so 'Node-A' and 'node-a' would collide.
        key = node.name.lower()
        if key in seen:
            raise ValueError(f"duplicate node name {node.name!r}: every node needs its own name")
        seen.add(key)
    return tuple(nodes)


def resolve_isolation(isolation: str, nodes: Sequence[ClusterNode]) -> Literal["netns", "process"]:
    if isolation not in ("auto", "netns", "process"):
        raise ValueError(f"isolation={isolation!r}: use 'auto', 'netns' or 'process'")
    if isolation == "netns" and not net.netns_available():
        raise ValueError("isolation='netns' needs root and the `ip` and `unshare` tools; "
                         "run as root or use isolation='process'")
    chosen: Literal["netns", "process"] = (
        "netns" if isolation == "netns" or (isolation == "auto" and net.netns_available())
        else "process")
    shaped = [n.name for n in nodes if n.shaped]
    if chosen == "process" and shaped:
        raise ValueError(f"nodes {shaped} set latency_ms/bandwidth_mbit, which only netns "
                         "isolation (root) can emulate; drop them or run as root")
    return chosen


def work(seconds: float) -> float:
    """Sleep for *seconds* of reference-speed work on this node; return the time slept.

    The node's speed comes from ``PARSL_NODE_SPEED`` (1.0 when unset), so a node of speed 2
    does the same work in half the time. Meant to be called inside a Parsl app.
    """
    speed = float(os.environ.get(NODE_SPEED_ENV, "1"))
    duration = seconds / speed
    time.sleep(duration)
    return duration


@dataclass
class _Pool:
    """A worker pool the provider started: one per live block."""

    node: ClusterNode
    proc: subprocess.Popen[bytes]
    stdout_path: str
    stderr_path: str
    cancelled: bool = False
    status: JobStatus = field(default_factory=lambda: JobStatus(JobState.RUNNING))


class LocalClusterProvider(ExecutionProvider):
    """Parsl provider that runs one worker pool per named node on this machine.

    One block is one node, so ``init_blocks = min_blocks = max_blocks = len(nodes)``.
    """

    def __init__(self, nodes: Sequence[ClusterNode], isolation: Isolation = "auto",
                 *, worker_init: str = "", status_polling_interval: int = 2) -> None:
        self.nodes = validate_nodes(nodes)
        self.isolation = resolve_isolation(isolation, self.nodes)
        self.worker_init = worker_init
        self._status_polling_interval = status_polling_interval
        self.tag = net.new_tag()
        # ExecutionProvider's required attributes, as the executor and strategy read them.
        self.nodes_per_block = 1
        self.init_blocks = self.min_blocks = self.max_blocks = len(self.nodes)
        self.parallelism = 1.0
        self.script_dir: str | None = None
        self.resources: dict[object, Any] = {}
        self.cores_per_node: int | None = None  # differs per node: set per pool as PARSL_CORES
        self.mem_per_node: float | None = None
        self._pools: dict[str, _Pool] = {}
        self._counter = 0
        self._lock = threading.RLock()
        self._network: net.ClusterNetwork | None = None
        self._started = False
        self._closed = False
        self._tmpdir: str | None = None
        if self.isolation == "netns":
            self._network = net.ClusterNetwork(self.tag, [
                net.NodeLink(n.name, i, n.latency_ms, n.bandwidth_mbit)
                for i, n in enumerate(self.nodes)])

    # -- what the cluster looks like ------------------------------------------------------

    @property
    def address(self) -> str:
        """The address pools reach the interchange at: the bridge's, or loopback.

        In netns mode this reserves the run's subnet (a record file; no kernel objects yet),
        because the executor needs the address before the cluster starts.
        """
        if self._network is None:
            return LOOPBACK
        if self._network.subnet is None:
            self._check_open()
            atexit.register(self.close)
            self._network.reserve()
        return self._network.bridge_address

    def node_address(self, name: str) -> str:
        """The address of node *name* (loopback in process mode)."""
        if self._network is None:
            return LOOPBACK
        index = [n.name for n in self.nodes].index(name)
        self.address  # noqa: B018 -- reserves the subnet the node address derives from
        return self._network.node_address(self._network.links[index])

    def netns_name(self, name: str) -> str | None:
        """The network namespace node *name* runs in, or None in process mode."""
        if self._network is None:
            return None
        return self._network.links[[n.name for n in self.nodes].index(name)].netns(self.tag)

    def describe_nodes(self) -> list[GraphNode]:
        """Each node with its worker slots, speed and link settings."""
        return [GraphNode(n.name, n.workers, n.speed, n.latency_ms, n.bandwidth_mbit)
                for n in self.nodes]

    def get_graph_nodes(self) -> list[ParslGraphNode]:
        """The nodes as Parsl's DAG planner sees them: one worker pool each."""
        if ParslGraphNode is None:
            raise NotImplementedError("this Parsl has no DAG planning (parsl.providers.base."
                                      "GraphNode); the parsl-saga fork has")
        return [ParslGraphNode(name=n.name, pools=1, speed=n.speed) for n in self.nodes]

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Build the nodes' network (netns mode); idempotent. Pools start with submit()."""
        with self._lock:
            self._check_open()
            if self._started:
                return
            atexit.register(self.close)
            if self._network is not None:
                try:
                    self._network.up()
                except BaseException:
                    self._network.down()
                    raise
            self._started = True

    def close(self) -> None:
        """Kill every pool and remove every namespace, link and record; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.cancel(list(self._pools))
            # Pools kill their own process groups; this also catches anything that escaped.
            net.kill_run_processes(self.tag)
            if self._network is not None:
                self._network.down()
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"local cluster {self.tag} is closed; make a new provider")

    # -- ExecutionProvider --------------------------------------------------------------------

    def submit(self, command: str, tasks_per_node: int, job_name: str = "parsl.cluster") -> str:
        with self._lock:
            self._check_open()
            self.start()
            node = self._free_node()
            if node is None:
                raise SubmitException(job_name, f"all {len(self.nodes)} nodes already run a pool; "
                                      "a LocalClusterProvider runs one block per node, so keep "
                                      "max_blocks <= len(nodes)")
            self._counter += 1
            job_id = f"{self.tag}-{node.name}-{self._counter}"
            self._pools[job_id] = self._launch(node, command, job_id)
            self.resources[job_id] = {"job_id": job_id, "node": node.name}
            logger.info("local cluster %s: started pool %s on node %s (pid %d)",
                        self.tag, job_id, node.name, self._pools[job_id].proc.pid)
            return job_id

    def _free_node(self) -> ClusterNode | None:
        busy = self._running_nodes()
        return next((n for n in self.nodes if n.name not in busy), None)

    def _launch(self, node: ClusterNode, command: str, job_id: str) -> _Pool:
        log_dir = self.script_dir or self._scratch_dir()
        stdout_path = os.path.join(log_dir, f"{job_id}.out")
        stderr_path = os.path.join(log_dir, f"{job_id}.err")
        script = f"{self.worker_init}\n{command}" if self.worker_init else command
        argv = ["bash", "-c", script]
        if self._network is not None:
            argv = self._network.wrap(self._network.links[self.nodes.index(node)], argv)
        env = os.environ | {
            NODE_NAME_ENV: node.name,
            NODE_SPEED_ENV: repr(float(node.speed)),
            "PARSL_CORES": str(node.workers),
            net.RUN_ENV: self.tag,
            net.OWNER_ENV: str(os.getpid()),
        }
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            # A session of its own makes the pool a process group cancel() can kill whole,
            # and keeps a terminal's Ctrl-C from reaching it behind the provider's back.
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True)
        return _Pool(node, proc, stdout_path, stderr_path)

    def _scratch_dir(self) -> str:
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{self.tag}-")
        return self._tmpdir

    def status(self, job_ids: Sequence[object]) -> list[JobStatus]:
        with self._lock:
            return [self._status_of(str(job_id)) for job_id in job_ids]

    def _status_of(self, job_id: str) -> JobStatus:
        pool = self._pools.get(job_id)
        if pool is None:
            return JobStatus(JobState.MISSING, f"no pool {job_id} in local cluster {self.tag}")
        if pool.status.terminal:
            return pool.status
        code = pool.proc.poll()
        if code is None:
            return pool.status
        if pool.cancelled:
            state = JobState.CANCELLED
        else:
            state = JobState.COMPLETED if code == 0 else JobState.FAILED
        pool.status = JobStatus(state, exit_code=code, stdout_path=pool.stdout_path,
                                stderr_path=pool.stderr_path)
        return pool.status

    def kill_node(self, name: str) -> str:
        """SIGKILL the pool of node *name* and its workers at once, as a crash would (for
        tests and benchmarks of node loss); its block then reports FAILED, and the next
        ``submit()`` may start a new pool on the node. Returns the pool's job id.

        :raises ValueError: if no pool of that node is running
        """
        with self._lock:
            live = [(job_id, pool) for job_id, pool in self._pools.items()
                    if pool.node.name == name and pool.proc.poll() is None]
            if not live:
                raise ValueError(f"no pool is running on node {name!r} of local cluster "
                                 f"{self.tag}; running: {sorted(self._running_nodes())}")
            [(job_id, pool)] = live
            _signal_group(pool.proc.pid, signal.SIGKILL)
            pool.proc.wait()
            return job_id

    def _running_nodes(self) -> set[str]:
        return {p.node.name for p in self._pools.values() if p.proc.poll() is None}

    def cancel(self, job_ids: Sequence[object], grace_s: float = 2.0) -> list[bool]:
        """Kill each block's whole process group: TERM, then KILL after *grace_s*."""
        with self._lock:
            pools = [self._pools.get(str(job_id)) for job_id in job_ids]
            live = [p for p in pools if p is not None and p.proc.poll() is None]
            for pool in pools:
                if pool is not None:
                    pool.cancelled = True
            # Signal every pool before waiting on any, so n pools cost one grace period.
            for pool in live:
                _signal_group(pool.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for pool in live:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    pool.proc.wait(max(0.0, deadline - time.monotonic()))
            # KILL the group even when its leader exited: workers may outlive it.
            for pool in live:
                _signal_group(pool.proc.pid, signal.SIGKILL)
                pool.proc.wait()
            return [pool is not None for pool in pools]

    @property
    def label(self) -> str:
        return "local_cluster"

    @property
    def status_polling_interval(self) -> int:
        return self._status_polling_interval

    def __repr__(self) -> str:
        return (f"LocalClusterProvider(nodes={list(self.nodes)!r}, "
                f"isolation={self.isolation!r}, tag={self.tag!r})")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group outlives its leader when workers linger, so signal it even if the
    # leader is gone; a missing group just means there is nothing left.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class LocalClusterExecutor(HighThroughputExecutor):
    """A HighThroughputExecutor that brings its LocalClusterProvider up and down with it.

    The cluster's network must exist before the interchange binds to the bridge address,
    and should go when the executor does; nothing else differs from the parent class.
    """

    provider: LocalClusterProvider

    def start(self) -> None:
        self.provider.start()
        try:
            super().start()
        except BaseException:
            self.provider.close()
            raise

    def shutdown(self, timeout: float = 10.0) -> None:
        try:
            super().shutdown(timeout=timeout)
        finally:
            self.provider.close()


def cluster_executor(label: str, nodes: Sequence[ClusterNode] | LocalClusterProvider,
                     *, isolation: Isolation = "auto", **htex_kwargs: Any) -> LocalClusterExecutor:
    """A HighThroughputExecutor whose blocks are the cluster's nodes, one pool each.

    It listens only on the address the pools can reach (the bridge, or loopback), which
    also spares HTEx its search of the machine's addresses. ``max_workers_per_node``
    defaults to the largest node's worker count; each pool sizes itself from its node's
    ``PARSL_CORES``. Other keyword arguments go to HighThroughputExecutor.
    """
    for managed in ("provider", "address"):
        if managed in htex_kwargs:
            raise ValueError(f"cluster_executor sets {managed}= itself; pass the nodes (or a "
                             "LocalClusterProvider) instead")
    provider = (nodes if isinstance(nodes, LocalClusterProvider)
                else LocalClusterProvider(nodes, isolation=isolation))
    htex_kwargs.setdefault("max_workers_per_node", max(n.workers for n in provider.nodes))
    return LocalClusterExecutor(label=label, provider=provider, address=provider.address,
                                **htex_kwargs)


def cleanup_stale(force: bool = False) -> list[str]:
    """Remove what crashed cluster runs left behind; return a line per removed object.

    A run is stale when the process that started it is gone. With ``force`` every cluster
    run on the machine is removed, live ones included. Slurm cluster runs are not touched:
    they have their own names and :func:`parsl_saga.slurm_cluster.cleanup_stale`.
    """
    return net.cleanup_stale_runs(net.LOCAL, SCRATCH_PREFIX, force)


def scratch_dirs(tag: str) -> list[Path]:
    """The temporary directories (pool logs) of run ``tag``."""
    return net.scratch_dirs(SCRATCH_PREFIX, tag)
