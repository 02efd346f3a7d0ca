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
_BRIDGE_RE = re.compile(rf"^{BRIDGE_PREFIX}({_TAG})$")
_VETH_RE = re.compile(rf"^{VETH_PREFIX}({_TAG})\d+$")
_NETNS_RE = re.compile(rf"^{NETNS_PREFIX}({_TAG})-")

# Environment variables every pool of a run carries, so its processes can be found again
# (psutil reads them from /proc) even when the run that started them is gone.
RUN_ENV = "PARSL_CLUSTER_RUN"
OWNER_ENV = "PARSL_CLUSTER_OWNER"


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

    def netns(self, tag: str) -> str:
        return f"{NETNS_PREFIX}{tag}-{self.name}"

    def veth(self, tag: str) -> str:
        return f"{VETH_PREFIX}{tag}{self.index}"

    @property
    def shaped(self) -> bool:
        return self.latency_ms > 0 or self.bandwidth_mbit is not None


class ClusterNetwork:
    """The bridge, namespaces and veth pairs of one cluster run."""

    def __init__(self, tag: str, links: Sequence[NodeLink]) -> None:
        self.tag = tag
        self.links = list(links)
        self.bridge = f"{BRIDGE_PREFIX}{tag}"
        self.subnet: ipaddress.IPv4Network | None = None

    # -- addresses -------------------------------------------------------------------------

    def reserve(self) -> str:
        """Pick a free /24 and record it; return the bridge (interchange) address.

        Only a record file is written here; kernel objects come with :meth:`up`. The record
        is written first so that a crash at any later point leaves something findable.
        """
        # A missing record means none yet or one released by down(): choose afresh, as
        # another run may have taken the old subnet since.
        if self.subnet is None or not _record_path(self.tag).exists():
            with _state_lock():
                self.subnet = _free_subnet(self.tag)
                _write_record(self.tag, self.subnet)
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
            _check_netem(self.tag)
        prefix = self.subnet.prefixlen
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.bridge_address}/{prefix}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for link in self.links:
            self._node_up(link, prefix)

    def _node_up(self, link: NodeLink, prefix: int) -> None:
        ns, veth = link.netns(self.tag), link.veth(self.tag)
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
        return teardown_tag(self.tag)

    def wrap(self, link: NodeLink, argv: Sequence[str]) -> list[str]:
        """The command line that runs *argv* inside the node's namespace under its host name.

        ``ip netns exec`` and ``unshare`` both exec, and ``sh`` execs the command, so the pid
        the caller starts is the pool's own and its process group is the pool's.
        """
        return ["ip", "netns", "exec", link.netns(self.tag), "unshare", "--uts", "--",
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


def _check_netem(tag: str) -> None:
    """Fail before building anything when the kernel cannot shape links."""
    if shutil.which("tc") is None:
        raise RuntimeError("latency_ms needs `tc` (iproute2) on PATH")
    # A throwaway veth pair (dummy devices may be missing too) named like a node's, with an
    # index no node gets, so cleanup of this run removes it even after a crash right here.
    probe = f"{VETH_PREFIX}{tag}999"
    _run("ip", "link", "add", probe, "type", "veth", "peer", "name", f"{VETH_PREFIX}{tag}998")
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
    return STATE_DIR / f"{tag}.json"


def _write_record(tag: str, subnet: ipaddress.IPv4Network) -> None:
    me = psutil.Process()
    record = {"tag": tag, "subnet": str(subnet), "pid": me.pid, "started": me.create_time()}
    _record_path(tag).write_text(json.dumps(record))


def _records() -> dict[str, dict[str, object]]:
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


def kill_run_processes(tag: str) -> list[int]:
    """SIGKILL every process that carries the run's tag in its environment."""
    killed: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get(RUN_ENV) == tag:
                proc.kill()
                killed.append(proc)
    psutil.wait_procs(killed, timeout=5)
    return [proc.pid for proc in killed]


def teardown_tag(tag: str) -> list[str]:
    """Remove the namespaces, veths, bridge and record of run *tag*; idempotent."""
    removed: list[str] = []
    if os.geteuid() != 0:
        return removed
    for ns in _netns_names():
        if ns.startswith(f"{NETNS_PREFIX}{tag}-"):
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
        is_veth = _VETH_RE.match(name) is not None and name[3:3 + TAG_LEN] == tag
        if name == f"{BRIDGE_PREFIX}{tag}" or is_veth:
            _run("ip", "link", "del", name, check=False)
            removed.append(f"link {name}")
    with contextlib.suppress(FileNotFoundError):
        _record_path(tag).unlink()
    return removed


def stale_tags(force: bool = False) -> set[str]:
    """Tags of runs whose owner is gone (all runs with *force*)."""
    records = _records()
    found = {m.group(1) for ns in _netns_names() if (m := _NETNS_RE.match(ns))}
    found |= {m.group(1) for name in _link_names()
              if (m := _BRIDGE_RE.match(name) or _VETH_RE.match(name))}
    found |= set(records)
    # Without a record nothing claims the objects: the record is written before any of them.
    return {tag for tag in found if force or tag not in records
            or not owner_alive(records[tag].get("pid"), records[tag].get("started"))}
