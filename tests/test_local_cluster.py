"""The local multi-node cluster, with real HTEx interchanges and worker pools.

CI runs as root, so the netns tests there build real namespaces; ``process`` isolation is
tested everywhere. Teardown is checked by looking for the run's objects in the kernel
(namespaces, links), its record file and its processes (by the run tag in their
environment) after a normal exit, an exception, Ctrl-C and a killed run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Iterator
from pathlib import Path

import parsl
import pytest
from parsl.config import Config

from parsl_saga import local_cluster_net as net
from parsl_saga.local_cluster import (
    SCRATCH_PREFIX,
    ClusterNode,
    GraphNode,
    LocalClusterExecutor,
    LocalClusterProvider,
    cleanup_stale,
    cluster_executor,
    work,
)
from parsl_saga.pools import wait_for_pools

ROOT = os.geteuid() == 0 and net.netns_available()
needs_root = pytest.mark.skipif(not ROOT, reason="netns isolation needs root, ip and unshare")
ISOLATIONS = [pytest.param("netns", marks=needs_root), "process"]
THREE = [ClusterNode("node-a", workers=2), ClusterNode("node-b", workers=1, speed=2.0),
         ClusterNode("node-c", workers=1, speed=0.5)]
# Short heartbeats so a pool that lost its interchange would not linger for minutes.
HTEX_FAST = {"heartbeat_period": 1, "heartbeat_threshold": 5, "poll_period": 10}


# -- helpers ---------------------------------------------------------------------------------


def leftovers(tag: str) -> list[str]:
    """Everything of run *tag* still on the machine; empty after a clean teardown."""
    return net.run_leftovers(tag, net.LOCAL, SCRATCH_PREFIX)


def wait_for_managers(executor: LocalClusterExecutor, expected: int | set[str],
                      timeout_s: float = 60, *, exactly: bool = False) -> None:
    try:
        wait_for_pools(executor, expected, timeout_s, exactly=exactly)
    except TimeoutError as e:
        logs = "\n".join(Path(p.stderr_path).read_text()[-2000:]
                         for p in executor.provider._pools.values())
        pytest.fail(f"{e}; pool stderr:\n{logs}")


@contextlib.contextmanager
def loaded(executor: LocalClusterExecutor, run_dir: Path) -> Iterator[None]:
    with parsl.load(Config(executors=[executor], run_dir=str(run_dir), strategy="none")):
        wait_for_managers(executor, len(executor.provider.nodes))
        yield


def _where(bridge: str, seconds: float,
           parsl_resource_specification: dict | None = None) -> dict[str, str]:
    """Where this task ran: node name, host name, namespace and source address."""
    import os
    import socket
    import subprocess
    import time

    time.sleep(seconds)
    ns = subprocess.run(["ip", "netns", "identify"], capture_output=True, text=True,
                        check=False).stdout.strip() if os.geteuid() == 0 else ""
    # Connecting a UDP socket sends nothing; it only picks the source address.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((bridge, 9))
        ip = s.getsockname()[0]
    return {"node": os.environ.get("PARSL_NODE_NAME", ""), "host": socket.gethostname(),
            "netns": ns, "ip": ip, "speed": os.environ.get("PARSL_NODE_SPEED", ""),
            "cores": os.environ.get("PARSL_CORES", "")}


# Workers cannot import this test module, so the app must travel by value: a copy of
# the function made here is not reachable by module and name, and dill pickles its code.
where = parsl.python_app(types.FunctionType(_where.__code__, {"__builtins__": __builtins__},
                                            "where", _where.__defaults__))


# -- input validation ------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "node_a"}, "host name"),
    ({"name": ""}, "host name"),
    ({"name": "a" * 64}, "host name"),
    ({"name": "n", "workers": 0}, "workers=0 must be an int >= 1"),
    ({"name": "n", "workers": 1.5}, "must be an int"),
    ({"name": "n", "workers": True}, "must be an int"),
    ({"name": "n", "speed": 0}, "speed=0 must be a finite number > 0"),
    ({"name": "n", "speed": -1.0}, "speed=-1.0"),
    ({"name": "n", "speed": float("nan")}, "speed=nan"),
    ({"name": "n", "speed": float("inf")}, "speed=inf"),
    ({"name": "n", "speed": "fast"}, "speed='fast'"),
    ({"name": "n", "latency_ms": -1}, "latency_ms=-1"),
    ({"name": "n", "bandwidth_mbit": 0}, "bandwidth_mbit=0"),
])
def test_bad_node_is_a_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterNode(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("nodes", "message"), [
    ([], "at least one node"),
    ([ClusterNode("a"), ClusterNode("b"), ClusterNode("a")], "duplicate node name 'a'"),
    ([ClusterNode("node-a"), ClusterNode("Node-A")], "duplicate node name 'Node-A'"),
    (ClusterNode("a"), "must be a list of ClusterNode"),
    (["a"], "must be ClusterNode instances"),
])
def test_bad_node_list_is_a_clear_error(nodes: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalClusterProvider(nodes, isolation="process")  # type: ignore[arg-type]


def test_bad_isolation_and_unsupported_shaping_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="isolation='vm'"):
        LocalClusterProvider([ClusterNode("a")], isolation="vm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only netns isolation"):
        LocalClusterProvider([ClusterNode("a", latency_ms=5)], isolation="process")
    with pytest.raises(ValueError, match="sets provider= itself"):
        cluster_executor("c", [ClusterNode("a")], isolation="process", provider=None)


@pytest.mark.skipif(ROOT, reason="checks the error a non-root user gets")
def test_netns_without_root_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs root"):
        LocalClusterProvider([ClusterNode("a")], isolation="netns")


def test_graph_nodes_describe_the_cluster() -> None:
    nodes = [*THREE, ClusterNode("node-d", workers=4, speed=1.5)]
    if ROOT:
        nodes.append(ClusterNode("node-e", latency_ms=2.5, bandwidth_mbit=100))
    provider = LocalClusterProvider(nodes)
    expected = [GraphNode("node-a", 2, 1.0), GraphNode("node-b", 1, 2.0),
                GraphNode("node-c", 1, 0.5), GraphNode("node-d", 4, 1.5)]
    if ROOT:
        expected.append(GraphNode("node-e", 1, 1.0, latency_ms=2.5, bandwidth_mbit=100))
    assert provider.describe_nodes() == expected
    planner_view = provider.get_graph_nodes()
    assert [(n.name, n.pools, n.speed) for n in planner_view] == [
        (n.name, 1, n.speed) for n in expected]
    assert (provider.init_blocks, provider.min_blocks, provider.max_blocks) == (len(nodes),) * 3
    provider.close()
    assert leftovers(provider.tag) == []


def test_work_scales_by_node_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARSL_NODE_SPEED", "4")
    assert work(0.2) == pytest.approx(0.05)
    monkeypatch.delenv("PARSL_NODE_SPEED")
    assert work(0.01) == pytest.approx(0.01)


# -- real clusters ---------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_each_pool_runs_on_its_own_node(isolation: str, tmp_path: Path) -> None:
    executor = cluster_executor("cluster", THREE, isolation=isolation, **HTEX_FAST)
    provider = executor.provider
    assert provider.isolation == isolation
    with loaded(executor, tmp_path):
        # More tasks than the 4 worker slots, so every pool gets some on the first dispatch.
        seen = [f.result(timeout=60) for f in [where(provider.address, 0.3) for _ in range(16)]]
    by_node = {r["node"]: r for r in seen}
    assert sorted(by_node) == ["node-a", "node-b", "node-c"]
    for node in THREE:
        r = by_node[node.name]
        assert float(r["speed"]) == node.speed
        assert r["cores"] == str(node.workers)
        if isolation == "netns":
            assert r["host"] == node.name
            assert r["netns"] == provider.netns_name(node.name)
            assert r["ip"] == provider.node_address(node.name)
        else:
            assert r["ip"] == "127.0.0.1"
    # Every result from one node came from that node's namespace and address alone.
    assert len({(r["node"], r["host"], r["netns"], r["ip"]) for r in seen}) == 3
    assert leftovers(provider.tag) == []


# The next two run once, with "auto" isolation (netns as root, as in CI): each HTEx start
# costs seconds, and the process path's teardown is covered by the tests around them.


def test_teardown_after_an_exception_in_the_with_block(tmp_path: Path) -> None:
    executor = cluster_executor("cluster", THREE[:2], **HTEX_FAST)
    tag = executor.provider.tag
    config = Config(executors=[executor], run_dir=str(tmp_path), strategy="none")
    with pytest.raises(RuntimeError, match="boom"), parsl.load(config):
        # Fail while the pools are still starting up: they must go too.
        deadline = time.monotonic() + 30
        while len(executor.provider._pools) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(item.startswith("process") for item in leftovers(tag))
        raise RuntimeError("boom")
    assert leftovers(tag) == []


SIGINT_SCRIPT = textwrap.dedent("""
    import sys
    import parsl
    from parsl.config import Config
    from parsl_saga.local_cluster import ClusterNode, cluster_executor
    from parsl_saga.pools import wait_for_pools

    @parsl.python_app
    def nap():
        import time
        time.sleep(120)

    ex = cluster_executor("c", [ClusterNode("node-a"), ClusterNode("node-b")],
                          isolation=sys.argv[1], heartbeat_period=1, heartbeat_threshold=5)
    with parsl.load(Config(executors=[ex], run_dir=sys.argv[2], strategy="none")):
        wait_for_pools(ex, 2)
        future = nap()
        print("READY", ex.provider.tag, flush=True)
        future.result()
""")


def test_teardown_after_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-P", "-c", SIGINT_SCRIPT, "auto", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tag = _wait_ready(proc)
        assert leftovers(tag)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode != 0
    assert leftovers(tag) == []


def _wait_ready(proc: subprocess.Popen[str], timeout_s: float = 90) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY"):
            return line.split()[1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"cluster script never got ready; stderr:\n{proc.communicate()[1][-3000:]}")


# -- provider without an executor -----------------------------------------------------------


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_cancel_kills_the_whole_process_group(isolation: str) -> None:
    with LocalClusterProvider(THREE[:1], isolation=isolation) as provider:
        # Two background sleepers and a foreground one: all in the block's process group.
        job = provider.submit("sleep 300 & sleep 300 & sleep 300; wait", 1)
        deadline = time.monotonic() + 10
        while len(leftovers(provider.tag)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert provider.status([job])[0].state.name == "RUNNING"
        assert provider.cancel([job]) == [True]
        # The group's leader is awaited; its children die of the same signal, maybe a moment
        # later: poll rather than race them.
        deadline = time.monotonic() + 10
        while [p for p in leftovers(provider.tag) if p.startswith("process")]:
            assert time.monotonic() < deadline, f"still running: {leftovers(provider.tag)}"
            time.sleep(0.1)
        assert provider.status([job])[0].state.name == "CANCELLED"
        # The node is free again: a replacement block lands on it.
        assert provider.submit("sleep 300", 1) != job
    assert leftovers(provider.tag) == []


def test_one_block_per_node() -> None:
    with LocalClusterProvider(THREE[:1], isolation="process") as provider:
        provider.submit("sleep 300", 1)
        with pytest.raises(Exception, match="one block per node"):
            provider.submit("sleep 300", 1)
    assert leftovers(provider.tag) == []


CRASH_SCRIPT = textwrap.dedent("""
    import sys, time
    from parsl_saga.local_cluster import ClusterNode, LocalClusterProvider

    provider = LocalClusterProvider([ClusterNode("node-a"), ClusterNode("node-b")],
                                    isolation=sys.argv[1])
    provider.start()
    provider.submit("sleep 300", 1)
    provider.submit("sleep 300", 1)
    print("READY", provider.tag, flush=True)
    time.sleep(300)
""")


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_cleanup_stale_removes_a_killed_run(isolation: str) -> None:
    proc = subprocess.Popen([sys.executable, "-P", "-c", CRASH_SCRIPT, isolation],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tag = _wait_ready(proc)
    proc.kill()  # SIGKILL: no atexit, no cleanup; the run's objects stay behind
    proc.wait()
    assert leftovers(tag)
    removed = cleanup_stale()
    assert any(tag in item or item.startswith("process") for item in removed)
    assert leftovers(tag) == []


@needs_root
def test_bandwidth_alone_is_shaped_without_netem() -> None:
    nodes = [ClusterNode("node-a", bandwidth_mbit=50)]
    with LocalClusterProvider(nodes, isolation="netns") as provider:
        for where_ in (["ip", "netns", "exec", provider.netns_name("node-a")], []):
            devices = ["eth0"] if where_ else [net.NodeLink("node-a", 0).veth(provider.tag)]
            qdisc = subprocess.run([*where_, "tc", "qdisc", "show", "dev", *devices],
                                   capture_output=True, text=True, check=True).stdout
            assert "tbf" in qdisc and "rate 50Mbit" in qdisc, qdisc
    assert leftovers(provider.tag) == []


@needs_root
def test_link_shaping_is_applied_or_refused_clearly() -> None:
    nodes = [ClusterNode("node-a", latency_ms=5, bandwidth_mbit=50)]
    provider = LocalClusterProvider(nodes, isolation="netns")
    try:
        provider.start()
    except RuntimeError as err:
        # Kernels without sch_netem (this project's CI VMs) cannot shape links.
        assert "netem" in str(err)
    else:
        qdisc = subprocess.run(["ip", "netns", "exec", provider.netns_name("node-a"), "tc",
                                "qdisc", "show", "dev", "eth0"], capture_output=True, text=True)
        assert "netem" in qdisc.stdout and "delay 5ms" in qdisc.stdout
    finally:
        provider.close()
    assert leftovers(provider.tag) == []


# -- a node that goes away and comes back ---------------------------------------------------


def test_a_node_that_comes_back_gets_its_pinned_work_again(tmp_path: Path) -> None:
    """Soft policy with a grace period far beyond the test: tasks pinned to a node whose
    pool died wait for it, and run there once a new pool registers on that node."""
    nodes = [ClusterNode("node-a"), ClusterNode("node-b")]
    executor = cluster_executor("cluster", nodes, isolation="process",
                                node_affinity_policy="soft", node_affinity_grace_period=3600,
                                **HTEX_FAST)
    provider = executor.provider
    pin_b = {"node_affinity": "node-b"}
    with loaded(executor, tmp_path):
        assert where(provider.address, 0, parsl_resource_specification=pin_b).result(
            timeout=60)["node"] == "node-b"
        (job_b,) = [job for job, pool in provider._pools.items() if pool.node.name == "node-b"]
        provider.cancel([job_b])
        wait_for_managers(executor, {"node-a"}, exactly=True)  # node-b's pool is gone

        waiting = [where(provider.address, 0, parsl_resource_specification=pin_b)
                   for _ in range(3)]
        elsewhere = where(provider.address, 0,
                          parsl_resource_specification={"node_affinity": "node-a"})
        assert elsewhere.result(timeout=60)["node"] == "node-a"
        assert not any(f.done() for f in waiting)  # node-b is gone: they wait for it

        executor.scale_out_facade(1)  # the provider starts it on the free node, node-b
        assert [f.result(timeout=120)["node"] for f in waiting] == ["node-b"] * 3
    assert leftovers(provider.tag) == []
