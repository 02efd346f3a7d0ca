"""Network namespaces for the local multi-node cluster (root only).

One bridge per cluster run on the host, one network namespace per node joined to it by a
veth pair, addresses from a private /24 in 10.213.0.0/16 that no other run and no host
route uses. Every kernel object carries the run's tag, and a record file per run names its
owner process, so that a crashed run's leftovers can be found and removed by
:func:`cleanup_stale`.

Names (Linux caps interface names at 15 characters, hence the short prefixes):

- bridge ``psb<tag>``; host end of node *i*'s veth ``psv<tag><i>`` (its peer is ``eth0``
  inside the namespace);
- namespace ``parsl-<tag>-<node name>``;
- record ``/run/parsl-saga-cluster/<tag>.json``.

Those are the local cluster's names (:data:`LOCAL`). Another kind of run on the same
network code, such as the Slurm cluster, brings its own :class:`RunNaming`, so each kind's
cleanup finds and removes only its own runs; all kinds share the record directory, so no
two runs of any kind get the same subnet.

The namespaces get no default route on purpose: the only addresses a node can reach are
its peers and the bridge address the interchange listens on, so nothing a task does can
send traffic anywhere else through the host.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

STATE_DIR = Path("/run/parsl-saga-cluster")
SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")
BRIDGE_PREFIX = "psb"
VETH_PREFIX = "psv"
NETNS_PREFIX = "parsl-"
TAG_LEN = 6
_TAG = f"[0-9a-f]{{{TAG_LEN}}}"

# Environment variables every pool of a run carries, so its processes can be found again
# (psutil reads them from /proc) even when the run that started them is gone.
RUN_ENV = "PARSL_CLUSTER_RUN"
OWNER_ENV = "PARSL_CLUSTER_OWNER"


@dataclass(frozen=True)
class RunNaming:
    """How one kind of run names its bridge, veths, namespaces, record file and processes.

    The bridge and veth prefixes must leave room for the tag (and a veth's node index)
    within Linux's 15-character interface names.
    """

    bridge: str
    veth: str
    netns: str
    record: str
    run_env: str
    owner_env: str

    def __post_init__(self) -> None:
        if len(self.veth) + TAG_LEN + 3 > 15 or len(self.bridge) + TAG_LEN > 15:
            raise ValueError(f"{self}: interface name prefixes too long for 15-char names")

    def bridge_of(self, tag: str) -> str:
        return f"{self.bridge}{tag}"

    def record_path(self, tag: str) -> Path:
        return STATE_DIR / f"{self.record}{tag}.json"

    def tag_of_bridge_or_veth(self, name: str) -> str | None:
        match = (re.match(rf"^{re.escape(self.bridge)}({_TAG})$", name)
                 or re.match(rf"^{re.escape(self.veth)}({_TAG})\d+$", name))
        return match.group(1) if match else None

    def tag_of_netns(self, name: str) -> str | None:
        match = re.match(rf"^{re.escape(self.netns)}({_TAG})-", name)
        return match.group(1) if match else None

    def tag_of_record(self, stem: str) -> str | None:
        match = re.match(rf"^{re.escape(self.record)}({_TAG})$", stem)
        return match.group(1) if match else None


LOCAL = RunNaming(BRIDGE_PREFIX, VETH_PREFIX, NETNS_PREFIX, "", RUN_ENV, OWNER_ENV)


def new_tag() -> str:
    return secrets.token_hex(TAG_LEN // 2)


def netns_available() -> bool:
    """True when this process may build namespaces: root, with ``ip`` and ``unshare``."""
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "unshare"))


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class NodeLink:
    """One node's share of the network, and the shaping asked for on its link."""

    name: str
    index: int
    latency_ms: float = 0.0
    bandwidth_mbit: float | None = None

    def netns(self, tag: str, naming: RunNaming = LOCAL) -> str:
        return f"{naming.netns}{tag}-{self.name}"

    def veth(self, tag: str, naming: RunNaming = LOCAL) -> str:
        return f"{naming.veth}{tag}{self.index}"

    @property
    def shaped(self) -> bool:
        return self.latency_ms > 0 or self.bandwidth_mbit is not None


class ClusterNetwork:
    """The bridge, namespaces and veth pairs of one cluster run."""

    def __init__(self, tag: str, links: Sequence[NodeLink], naming: RunNaming = LOCAL) -> None:
        self.tag = tag
        self.links = list(links)
        self.naming = naming
        self.bridge = naming.bridge_of(tag)
        self.subnet: ipaddress.IPv4Network | None = None

    # -- addresses -------------------------------------------------------------------------

    def reserve(self) -> str:
        """Pick a free /24 and record it; return the bridge (interchange) address.

        Only a record file is written here; kernel objects come with :meth:`up`. The record
        is written first so that a crash at any later point leaves something findable.
        """
        # A missing record means none yet or one released by down(): choose afresh, as
        # another run may have taken the old subnet since.
        if self.subnet is None or not self.naming.record_path(self.tag).exists():
            with _state_lock():
                self.subnet = _free_subnet(self.tag)
                _write_record(self.naming.record_path(self.tag), self.tag, self.subnet)
        return self.bridge_address

    @property
    def bridge_address(self) -> str:
        assert self.subnet is not None, "reserve() first"
        return str(self.subnet.network_address + 1)

    def node_address(self, link: NodeLink) -> str:
        assert self.subnet is not None, "reserve() first"
        return str(self.subnet.network_address + 2 + link.index)

    # -- lifecycle ---------------------------------------------------------------------------

    def up(self) -> None:
        self.reserve()
        assert self.subnet is not None
        if any(link.latency_ms > 0 for link in self.links):
            _check_netem(self.tag, self.naming)
        prefix = self.subnet.prefixlen
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.bridge_address}/{prefix}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for link in self.links:
            self._node_up(link, prefix)

    def _node_up(self, link: NodeLink, prefix: int) -> None:
        ns, veth = self.netns(link), link.veth(self.tag, self.naming)
        _run("ip", "netns", "add", ns)
        # The peer is created inside the namespace directly and named eth0 there, so no
        # interface with a clashing name ever exists on the host.
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _run("ip", "link", "set", veth, "master", self.bridge)
        _run("ip", "link", "set", veth, "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", ns, "addr", "add", f"{self.node_address(link)}/{prefix}", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        if link.shaped:
            # Shaping both ends makes each direction see the one-way latency and the rate.
            _run("tc", "qdisc", "add", "dev", veth, "root", *_qdisc_args(link))
            _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root",
                 *_qdisc_args(link))

    def down(self) -> list[str]:
        """Remove everything this run created; safe to call repeatedly. Returns what it removed."""
        # The subnet stays known (for reports after close); the record releases it.
        return teardown_tag(self.tag, self.naming)

    def netns(self, link: NodeLink) -> str:
        """The name of *link*'s node's network namespace."""
        return link.netns(self.tag, self.naming)

    def wrap(self, link: NodeLink, argv: Sequence[str], *, host_sys: bool = False) -> list[str]:
        """The command line that runs *argv* inside the node's namespace under its host name.

        ``ip netns exec`` and ``unshare`` both exec, and ``sh`` execs the command, so the pid
        the caller starts is the pool's own and its process group is the pool's.

        ``ip netns exec`` also mounts a fresh /sys for the namespace, which hides the host's
        /sys/fs/cgroup; with *host_sys* the command enters the namespace with ``nsenter``
        instead and keeps the host's /sys (slurmd will not start without its cgroups).
        """
        enter = (["nsenter", f"--net=/run/netns/{self.netns(link)}"] if host_sys
                 else ["ip", "netns", "exec", self.netns(link)])
        return [*enter, "unshare", "--uts", "--",
                "sh", "-c", 'hostname "$0" && exec "$@"', link.name, *argv]


def _qdisc_args(link: NodeLink) -> list[str]:
    """netem when the link has latency (it also limits the rate); a token bucket (tbf)
    for a rate alone, which kernels without netem have too."""
    if link.latency_ms > 0:
        args = ["netem", "delay", f"{link.latency_ms}ms"]
        if link.bandwidth_mbit is not None:
            args += ["rate", f"{link.bandwidth_mbit}mbit"]
        return args
    assert link.bandwidth_mbit is not None
    # The bucket must hold at least one timer tick's worth of bytes at the rate (10 ms
    # covers HZ=100) and one full-size frame.
    burst = max(1600, int(link.bandwidth_mbit * 1e6 / 8 / 100))
    return ["tbf", "rate", f"{link.bandwidth_mbit}mbit", "burst", str(burst), "latency", "50ms"]


def _check_netem(tag: str, naming: RunNaming) -> None:
    """Fail before building anything when the kernel cannot shape links."""
    if shutil.which("tc") is None:
        raise RuntimeError("latency_ms needs `tc` (iproute2) on PATH")
    # A throwaway veth pair (dummy devices may be missing too) named like a node's, with an
    # index no node gets, so cleanup of this run removes it even after a crash right here.
    probe = f"{naming.veth}{tag}999"
    _run("ip", "link", "add", probe, "type", "veth", "peer", "name", f"{naming.veth}{tag}998")
    try:
        proc = _run("tc", "qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms",
                    check=False)
    finally:
        _run("ip", "link", "del", probe, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            "latency_ms needs the kernel's netem qdisc, which is not available here "
            f"({proc.stderr.strip()}); load it with `modprobe sch_netem`, or drop latency_ms "
            "from the nodes (bandwidth_mbit alone uses tbf, which needs no netem)")


# -- run records ---------------------------------------------------------------------------


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    """Serialise subnet choice between concurrent runs on this machine."""
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _record_path(tag: str) -> Path:
    return LOCAL.record_path(tag)


def _write_record(path: Path, tag: str, subnet: ipaddress.IPv4Network) -> None:
    me = psutil.Process()
    record = {"tag": tag, "subnet": str(subnet), "pid": me.pid, "started": me.create_time()}
    path.write_text(json.dumps(record))


def _records() -> dict[str, dict[str, object]]:
    """Every run's record, of every kind, by file stem."""
    out: dict[str, dict[str, object]] = {}
    if STATE_DIR.is_dir():
        for path in STATE_DIR.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                out[path.stem] = json.loads(path.read_text())
    return out


def owner_alive(pid: object, started: object) -> bool:
    """Whether *pid* is still the process that made the record (pids get reused)."""
    if not isinstance(pid, int):
        return False
    try:
        proc = psutil.Process(pid)
        return started is None or abs(proc.create_time() - float(str(started))) < 1.0
    except psutil.Error:
        return False


def _free_subnet(tag: str) -> ipaddress.IPv4Network:
    """A /24 of SUPERNET used by no run record and overlapping no host address or route."""
    taken = [ipaddress.IPv4Network(str(r["subnet"])) for r in _records().values()]
    taken += _host_networks()
    candidates = list(SUPERNET.subnets(new_prefix=24))[1:-1]
    # Start at a tag-derived offset so that concurrent runs rarely even contend.
    start = int(tag, 16) % len(candidates)
    for i in range(len(candidates)):
        net = candidates[(start + i) % len(candidates)]
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError(f"no free /24 left in {SUPERNET}; remove stale runs with cleanup_stale()")


def _host_networks() -> list[ipaddress.IPv4Network]:
    nets: list[ipaddress.IPv4Network] = []
    for argv in (("ip", "-4", "-o", "addr", "show"), ("ip", "-4", "route", "show", "table", "all")):
        for token in _run(*argv, check=False).stdout.split():
            with contextlib.suppress(ValueError):
                if "/" in token or token.count(".") == 3:
                    nets.append(ipaddress.IPv4Network(token, strict=False))
    return nets


# -- teardown --------------------------------------------------------------------------------


def _netns_names() -> list[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_names() -> list[str]:
    out = _run("ip", "-o", "link", "show", check=False).stdout
    # Lines look like "12: psv1a2b3c0@if11: <...>"; the part after '@' is the peer.
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def kill_run_processes(tag: str, naming: RunNaming = LOCAL) -> list[int]:
    """SIGKILL every process that carries the run's tag in its environment."""
    killed: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get(naming.run_env) == tag:
                proc.kill()
                killed.append(proc)
    psutil.wait_procs(killed, timeout=5)
    return [proc.pid for proc in killed]


def teardown_tag(tag: str, naming: RunNaming = LOCAL) -> list[str]:
    """Remove the namespaces, veths, bridge and record of run *tag*; idempotent."""
    removed: list[str] = []
    if os.geteuid() != 0:
        return removed
    for ns in _netns_names():
        if naming.tag_of_netns(ns) == tag:
            # A namespace lives on while any process is in it, so empty it first.
            pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _run("ip", "netns", "del", ns, check=False)
            removed.append(f"netns {ns}")
    # Deleting a namespace deletes its veth peer and with it the host end; these catch
    # the ends of a setup that failed half way. Their qdiscs go with the device.
    for name in _link_names():
        if naming.tag_of_bridge_or_veth(name) == tag:
            _run("ip", "link", "del", name, check=False)
            removed.append(f"link {name}")
    with contextlib.suppress(FileNotFoundError):
        naming.record_path(tag).unlink()
    return removed


def stale_tags(force: bool = False, naming: RunNaming = LOCAL) -> set[str]:
    """Tags of runs of this kind whose owner is gone (all its runs with *force*)."""
    records = {tag: record for stem, record in _records().items()
               if (tag := naming.tag_of_record(stem)) is not None}
    found = {tag for ns in _netns_names() if (tag := naming.tag_of_netns(ns))}
    found |= {tag for name in _link_names() if (tag := naming.tag_of_bridge_or_veth(name))}
    found |= set(records)
    # Without a record nothing claims the objects: the record is written before any of them.
    return {tag for tag in found if force or tag not in records
            or not owner_alive(records[tag].get("pid"), records[tag].get("started"))}


def stale_process_tags(force: bool = False, naming: RunNaming = LOCAL) -> set[str]:
    """Tags that processes of this kind of run carry, whose owner process is gone."""
    tags: set[str] = set()
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ValueError):
            env = proc.environ()
            tag = env.get(naming.run_env)
            if tag and (force or not psutil.pid_exists(int(env.get(naming.owner_env, "0")))):
                tags.add(tag)
    return tags


def scratch_dirs(scratch_prefix: str, tag: str) -> list[Path]:
    """The temporary directories run *tag* made with ``mkdtemp(prefix=scratch_prefix+tag+'-')``."""
    return sorted(Path(tempfile.gettempdir()).glob(f"{scratch_prefix}{tag}-*"))


def run_leftovers(tag: str, naming: RunNaming, scratch_prefix: str) -> list[str]:
    """Everything of run *tag* still on the machine: its processes, scratch directories,
    namespaces, links and record. Empty after a clean teardown."""
    found: list[str] = []
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get(naming.run_env) == tag:
                found.append(f"process {proc.pid} {proc.info['name']}")
    found += [f"scratch dir {d}" for d in scratch_dirs(scratch_prefix, tag)]
    if os.geteuid() == 0:
        found += [f"netns {ns}" for ns in _netns_names() if naming.tag_of_netns(ns) == tag]
        found += [f"link {name}" for name in _link_names()
                  if naming.tag_of_bridge_or_veth(name) == tag]
        if naming.record_path(tag).exists():
            found.append(f"record {naming.record_path(tag)}")
    return found


def cleanup_stale_runs(naming: RunNaming, scratch_prefix: str, force: bool = False) -> list[str]:
    """Remove what crashed runs of one kind left behind; return a line per removed object.

    A run is stale when the process that started it is gone; with *force* every run of the
    kind is removed, live ones included. Its processes go first, so that nothing holds a
    namespace open or writes to a scratch directory while they are removed.
    """
    removed: list[str] = []
    tags = stale_process_tags(force, naming)
    if os.geteuid() == 0:
        tags |= stale_tags(force, naming)
    for tag in sorted(tags):
        removed += [f"process {pid}" for pid in kill_run_processes(tag, naming)]
        removed += teardown_tag(tag, naming)
        for scratch in scratch_dirs(scratch_prefix, tag):
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(f"scratch dir {scratch}")
    return removed
