"""A real Slurm cluster on this machine, and Parsl's own SlurmProvider submitting to it.

The cluster tests need root and Debian's Slurm and munge (``scripts/setup_slurm.sh``;
``make test`` runs it when root). Without them they are skipped, with the reason in a
warning that pytest's summary shows (also under CI, until CI is known to install
Debian packages: a failed install must not keep the rest of ``make test`` from landing).

Every node is checked by host name and by network namespace (the inode that
``readlink /proc/self/ns/net`` shows inside a job against the namespace's own).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import parsl
import pytest
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.executors.high_throughput.errors import NodeUnavailable
from parsl.executors.node_affinity import placeholder_node
from parsl.providers import SlurmProvider

from parsl_saga import local_cluster_net as net
from parsl_saga.local_cluster import ClusterNode
from parsl_saga.slurm_cluster import (
    SCRATCH_PREFIX,
    SLURM,
    SlurmCluster,
    SlurmDaemonError,
    SlurmUnavailable,
    cleanup_stale,
    node_identity,
    slurm_unavailable_reason,
    speed_feature,
)

THREE = [ClusterNode("node1", workers=1, speed=1.0), ClusterNode("node2", workers=2, speed=2.0),
         ClusterNode("node3", workers=1, speed=0.5)]
# Short heartbeats so that a pool whose job was cancelled is noticed within seconds.
HTEX_FAST = {"heartbeat_period": 1, "heartbeat_threshold": 5, "poll_period": 10}
identity = parsl.python_app(node_identity)


@pytest.fixture
def slurm_ok() -> None:
    """Skip loudly, with the reason and the fix, where the cluster cannot run."""
    reason = slurm_unavailable_reason()
    if reason is None:
        return
    warnings.warn(f"Slurm cluster tests SKIPPED: {reason}", stacklevel=1)
    pytest.skip(f"Slurm cluster tests skipped: {reason}")


@pytest.fixture
def cluster(slurm_ok: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmCluster]:
    """A running 3-node cluster whose SLURM_CONF this process (and Parsl) uses."""
    with SlurmCluster(THREE) as running:
        for key, value in running.env.items():
            monkeypatch.setenv(key, value)
        yield running
    assert leftovers(running.tag) == []


def leftovers(tag: str) -> list[str]:
    return net.run_leftovers(tag, SLURM, SCRATCH_PREFIX)


def poll(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def netns_of(cluster: SlurmCluster, node: str) -> str:
    return f"net:[{cluster.netns_inode(node)}]"


# -- without a cluster ---------------------------------------------------------------------


def test_bad_cluster_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        SlurmCluster([])
    with pytest.raises(ValueError, match="partition='a b'"):
        SlurmCluster(THREE, partition="a b")
    with pytest.raises(ValueError, match="duplicate node name 'node1'"):
        SlurmCluster([ClusterNode("node1"), ClusterNode("node1")])
    with pytest.raises(RuntimeError, match="not started"):
        SlurmCluster(THREE).bridge_address  # noqa: B018 -- the property is what is tested


def test_slurm_runs_and_local_runs_never_claim_each_others_objects() -> None:
    tag = "0a1b2c"
    assert SLURM.tag_of_netns(f"slurm-{tag}-node1") == tag
    assert net.LOCAL.tag_of_netns(f"slurm-{tag}-node1") is None
    assert SLURM.tag_of_netns(f"parsl-{tag}-node1") is None
    assert SLURM.tag_of_bridge_or_veth(f"ssv{tag}2") == tag
    assert net.LOCAL.tag_of_bridge_or_veth(f"ssb{tag}") is None
    assert SLURM.tag_of_bridge_or_veth(f"psb{tag}") is None
    assert net.LOCAL.tag_of_record(f"slurm-{tag}") is None
    assert SLURM.tag_of_record(tag) is None


def test_speed_is_a_node_feature_name() -> None:
    assert speed_feature(2) == "speed_2.0"
    assert speed_feature(0.5) == "speed_0.5"


@pytest.mark.skipif(os.geteuid() == 0, reason="checks the error a non-root user gets")
def test_starting_without_root_says_so() -> None:
    with pytest.raises(SlurmUnavailable, match="needs root"), SlurmCluster(THREE):
        pass


# -- the cluster itself ----------------------------------------------------------------------


def test_nodes_are_listed_with_their_speeds(cluster: SlurmCluster) -> None:
    sinfo = cluster.run("sinfo", "--noheader", "--Node", "--format=%N %t %f %c %P").stdout
    rows = {line.split()[0]: line.split()[1:] for line in sinfo.splitlines()}
    assert rows == {n.name: ["idle", speed_feature(n.speed), str(n.workers), "parsl*"]
                    for n in THREE}
    show = cluster.run("scontrol", "--oneliner", "show", "node", "node2").stdout
    assert "AvailableFeatures=speed_2.0" in show
    assert "CPUTot=2" in show
    assert "NodeHostName=node2" in show


def test_sbatch_runs_each_job_on_the_node_asked_for(cluster: SlurmCluster) -> None:
    script = "hostname; readlink /proc/self/ns/net; echo $SLURMD_NODENAME $PARSL_NODE_SPEED"
    jobs = {}
    for node in THREE:
        out = cluster.dir / f"{node.name}.out"
        job = cluster.run("sbatch", "--parsable", "-w", node.name, "-o", str(out),
                          "--wrap", script).stdout.strip()
        jobs[node] = (job, out)
    for node, (job, out) in jobs.items():
        assert cluster.wait_for_job(job) == "COMPLETED", out.read_text()
        host, netns, rest = out.read_text().splitlines()
        assert host == node.name
        assert netns == netns_of(cluster, node.name)
        assert rest == f"{node.name} {float(node.speed)!r}"
    # Three namespaces, not one seen three times.
    assert len({netns_of(cluster, n.name) for n in THREE}) == 3


def test_a_daemon_that_fails_to_start_is_a_clear_error(
        slurm_ok: None, monkeypatch: pytest.MonkeyPatch) -> None:
    real_conf = SlurmCluster._slurm_conf
    monkeypatch.setattr(SlurmCluster, "_slurm_conf",
                        lambda self, prolog: real_conf(self, prolog) + "NoSuchOption=1\n")
    broken = SlurmCluster(THREE[:1])
    with pytest.raises(SlurmDaemonError) as failure, broken:
        pass
    message = str(failure.value)
    assert message.startswith("slurmctld exited with code")
    assert "NoSuchOption" in message  # the log's own words, not just "it failed"
    assert leftovers(broken.tag) == []


def test_everything_goes_after_an_exception_in_the_with_block(slurm_ok: None) -> None:
    cluster = SlurmCluster(THREE[:2])
    with pytest.raises(RuntimeError, match="boom"), cluster:
        job = cluster.run("sbatch", "--parsable", "-w", "node1", "--wrap", "sleep 600",
                          "-o", "/dev/null").stdout.strip()
        poll(lambda: cluster.job_state(job) == "RUNNING", "the job to run")
        assert leftovers(cluster.tag) != []
        raise RuntimeError("boom")
    assert leftovers(cluster.tag) == []


@contextlib.contextmanager
def cluster_in_another_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A process that brings up a 1-node cluster and waits in its with block; and its tag."""
    ready = tmp_path / "tag"
    owner = subprocess.Popen([sys.executable, "-P", "-c", textwrap.dedent(f"""
        import pathlib, time
        from parsl_saga.slurm_cluster import ClusterNode, SlurmCluster
        with SlurmCluster([ClusterNode("node1")]) as cluster:
            pathlib.Path({str(ready)!r}).write_text(cluster.tag)
            time.sleep(600)
        """)])
    try:
        poll(lambda: ready.exists() or owner.poll() is not None, "the cluster to start")
        assert owner.poll() is None, "the owner process died before its cluster was up"
        yield owner, ready.read_text()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_cleanup_stale_removes_a_killed_run(slurm_ok: None, tmp_path: Path) -> None:
    with cluster_in_another_process(tmp_path) as (owner, tag):
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        assert leftovers(tag) != []  # SIGKILL runs no cleanup
        removed = cleanup_stale()
        assert any(f"slurm-{tag}-node1" in line for line in removed), removed
        assert leftovers(tag) == []


def test_everything_goes_after_ctrl_c(slurm_ok: None, tmp_path: Path) -> None:
    with cluster_in_another_process(tmp_path) as (owner, tag):
        owner.send_signal(signal.SIGINT)
        assert owner.wait(timeout=60) != 0  # KeyboardInterrupt, after the with block's exit
        assert leftovers(tag) == []


# -- Parsl's SlurmProvider on the cluster -----------------------------------------------------


def slurm_executor(cluster: SlurmCluster, blocks: int, partition: bool = True,
                   **htex: Any) -> HighThroughputExecutor:
    """HTEx on Parsl's own SlurmProvider: one node per block, pools named after their node.
    Without *partition*, jobs go to the cluster's default partition, which the provider
    then does not know."""
    provider = SlurmProvider(
        partition=cluster.partition if partition else None, nodes_per_block=1,
        init_blocks=blocks, min_blocks=blocks, max_blocks=blocks, walltime="00:10:00",
        # The fork's pools report PARSL_NODE_NAME; Slurm names the node in SLURMD_NODENAME.
        worker_init="export PARSL_NODE_NAME=$SLURMD_NODENAME")
    return HighThroughputExecutor(label="slurm", address=cluster.bridge_address,
                                  provider=provider, **{**HTEX_FAST, **htex})


def wait_for_nodes(executor: HighThroughputExecutor, count: int) -> set[str]:
    def registered() -> set[str]:
        return {m["node_name"] for m in executor.connected_managers() if m["active"]}
    poll(lambda: len(registered()) >= count, f"{count} pools to register", 120)
    return registered()


def test_slurm_provider_runs_every_task_on_the_cluster(
        cluster: SlurmCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    executor = slurm_executor(cluster, blocks=3)
    config = Config(executors=[executor], run_dir=str(tmp_path), strategy="none")
    with parsl.load(config):
        assert wait_for_nodes(executor, 3) == {n.name for n in THREE}
        anywhere = [identity() for _ in range(12)]
        # Pinned by hand (the fork's HTEx affinity key): each node provably runs a task.
        pinned = {n.name: identity(parsl_resource_specification={"node_affinity": n.name})
                  for n in THREE}
        results = [f.result(timeout=120) for f in anywhere]
        placed = {name: f.result(timeout=120) for name, f in pinned.items()}
    for name, where in placed.items():
        assert where["host"] == where["SLURMD_NODENAME"] == where["PARSL_NODE_NAME"] == name
        assert where["netns"] == netns_of(cluster, name)
    for where in results:
        assert where["host"] == where["SLURMD_NODENAME"]
        assert where["netns"] == netns_of(cluster, where["host"])
        speed = next(n.speed for n in THREE if n.name == where["host"])
        assert where["PARSL_NODE_SPEED"] == repr(float(speed))
    with capsys.disabled():
        counts = {n.name: sum(w["host"] == n.name for w in results) for n in THREE}
        print(f"\nunpinned tasks per node: {counts}")


def test_scancel_of_a_block_mid_run_does_not_hang(
        cluster: SlurmCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Unpinned tasks when a block's job is cancelled under them, as in stock Parsl:
    every task ends (result, or ManagerLost for those running there) and the test does
    not hang. Planned (pinned) tasks lose nothing: test_scancel_of_a_planned_nodes_job."""
    executor = slurm_executor(cluster, blocks=3)
    with parsl.load(Config(executors=[executor], run_dir=str(tmp_path))):
        wait_for_nodes(executor, 3)
        futures = [identity(3.0) for _ in range(8)]
        victim = busy_manager(executor)
        job = executor.blocks_to_job_id[victim["block_id"]]
        cluster.run("scancel", job)
        done, pending = concurrent.futures.wait(futures, timeout=180)
        outcomes = [outcome(f) for f in futures if f in done]  # pending ones would block
        blocks = dict(executor.blocks_to_job_id)
    assert not pending, f"{len(pending)} tasks never ended after scancel"
    assert cluster.job_state(job) == "CANCELLED"
    with capsys.disabled():
        print(f"\ncancelled job {job} (block {victim['block_id']}, node {victim['node_name']}),"
              f" {victim['tasks']} tasks on it; outcomes: {outcomes}; blocks: {blocks}")


def busy_manager(executor: HighThroughputExecutor) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def one_busy() -> bool:
        found[:] = [m for m in executor.connected_managers() if m["tasks"] > 0]
        return bool(found)

    poll(one_busy, "a pool to be running tasks")
    return found[0]


def outcome(future: Future[dict[str, str]]) -> str:
    error = future.exception()
    return future.result()["host"] if error is None else type(error).__name__


# -- planning on Slurm (the fork's SlurmProvider.get_graph_nodes and placeholder binding) ----


def submit_fan(width: int) -> dict[int, Future[dict[str, str]]]:
    """A root, *width* tasks of different costs after it, and a join, by task id."""
    def spec(cost: float) -> dict[str, object]:
        return {"cost": cost}
    root = identity(0.2, parsl_resource_specification=spec(0.2))
    middle = [identity(0.3 * (1 + i % 3), parsl_resource_specification=spec(0.3 * (1 + i % 3)),
                       inputs=[root]) for i in range(width)]
    join = identity(0.2, parsl_resource_specification=spec(0.2), inputs=middle)
    return {f.tid: f for f in (root, *middle, join)}


def planned_config(executor: HighThroughputExecutor, tmp_path: Path) -> Config:
    """One executor, planned with the native HEFT and run statically (these tests check
    that pinned tasks run on their Slurm node); no scaling, so the blocks stay as set."""
    return Config(executors=[executor], run_dir=str(tmp_path), strategy="none",
                  dag_scheduler="heft", plan_execution="static")


def independent_tasks(count: int, seconds: float) -> dict[int, Future[dict[str, str]]]:
    """*count* tasks of *seconds* reference-speed work each, with exact cost hints."""
    futures = (identity(seconds, parsl_resource_specification={"cost": seconds})
               for _ in range(count))
    return {f.tid: f for f in futures}


@contextlib.contextmanager
def planned_run(cluster: SlurmCluster, tmp_path: Path, blocks: int, policy: str,
                seconds: float) -> Iterator[tuple[HighThroughputExecutor,
                                                  dict[int, Future[dict[str, str]]], Any]]:
    """*blocks* one-node blocks (3 grace seconds for absent nodes, under *policy*), 12
    independent tasks of *seconds* planned once the three nodes' pools are up: the
    executor, the futures by task id, and the plan."""
    executor = slurm_executor(cluster, blocks=blocks, node_affinity_policy=policy,
                              node_affinity_grace_period=3)
    with parsl.load(planned_config(executor, tmp_path)) as dfk:
        wait_for_nodes(executor, 3)
        by_id = independent_tasks(12, seconds)
        yield executor, by_id, dfk.execute()


def assert_on_node(cluster: SlurmCluster, where: dict[str, str], node: str) -> None:
    assert where["host"] == where["SLURMD_NODENAME"] == where["PARSL_NODE_NAME"] == node
    assert where["netns"] == netns_of(cluster, node)


def bindings(executor: HighThroughputExecutor) -> dict[str, str]:
    return {m["placeholder"]: m["node_name"] for m in executor.connected_managers()
            if m["placeholder"] is not None}


def test_a_planned_workflow_runs_on_the_partitions_nodes_by_name(
        cluster: SlurmCluster, tmp_path: Path) -> None:
    """The partition has exactly the nodes the blocks fill: the plan names them, with
    their sinfo speeds, and every task runs on its planned node."""
    executor = slurm_executor(cluster, blocks=3)
    config = planned_config(executor, tmp_path)
    with parsl.load(config) as dfk:
        wait_for_nodes(executor, 3)
        by_id = submit_fan(9)
        plan = dfk.execute()
        results = {tid: f.result(timeout=120) for tid, f in by_id.items()}
    speeds = {t.node: (t.speed, t.speed_source) for t in plan.tasks.values()}
    assert speeds.keys() <= {n.name for n in THREE}
    assert all(speeds[n.name] == (n.speed, "provider") for n in THREE if n.name in speeds)
    assert len(speeds) >= 2, f"the plan used one node only: {speeds}"
    for tid, where in results.items():
        assert_on_node(cluster, where, plan.assignments[tid])


@pytest.mark.parametrize("pools_first", [True, False], ids=["pools-then-plan", "plan-then-pools"])
def test_a_planned_workflow_on_placeholder_nodes_follows_the_binding(
        cluster: SlurmCluster, tmp_path: Path, pools_first: bool) -> None:
    """The provider does not know the partition: the plan is made on placeholder nodes,
    which the interchange binds to the nodes whose pools register, one each; every task
    runs on the node its placeholder is bound to, checked by host name and namespace.
    Planning before any pool has registered works the same way."""
    executor = slurm_executor(cluster, blocks=3, partition=False, node_affinity_grace_period=600)
    config = planned_config(executor, tmp_path)
    with parsl.load(config) as dfk:
        if pools_first:
            wait_for_nodes(executor, 3)
        by_id = submit_fan(9)
        plan = dfk.execute()
        results = {tid: f.result(timeout=120) for tid, f in by_id.items()}
        bound = bindings(executor)
    assert set(plan.assignments.values()) <= {placeholder_node(i) for i in range(3)}
    # Nothing reports a placeholder's speed, and no history is kept for one.
    assert {(t.speed, t.speed_source) for t in plan.tasks.values()} == {(1.0, "default")}
    assert sorted(bound) == [placeholder_node(i) for i in range(3)]
    assert sorted(bound.values()) == [n.name for n in THREE], "one placeholder per node"
    for tid, where in results.items():
        assert_on_node(cluster, where, bound[plan.assignments[tid]])


@pytest.mark.parametrize("policy", ["soft", "strict"])
def test_scancel_of_a_planned_nodes_job(cluster: SlurmCluster, tmp_path: Path, policy: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Cancel the job of a node with planned work running and queued. Soft: every task
    still completes, with Parsl's default retries=0 (the running ones run again
    elsewhere, the queued ones are unpinned after the grace period). Strict: the tasks
    planned there fail clearly (ManagerLost while running, NodeUnavailable while queued);
    every other task completes on its planned node."""
    with planned_run(cluster, tmp_path, blocks=3, policy=policy, seconds=2.0) as run:
        executor, by_id, plan = run
        victim = busy_manager(executor)
        job = executor.blocks_to_job_id[victim["block_id"]]
        cluster.run("scancel", job)
        _, pending = concurrent.futures.wait(list(by_id.values()), timeout=240)
    assert not pending, f"{len(pending)} tasks never ended after scancel"
    lost = victim["node_name"]
    outcomes = {tid: outcome(f) for tid, f in by_id.items()}
    with capsys.disabled():
        planned_there = sorted(t for t, n in plan.assignments.items() if n == lost)
        print(f"\n{policy}: cancelled job {job} of {lost}; planned there: {planned_there};"
              f" outcomes: {outcomes}")
    for tid, f in by_id.items():
        planned = plan.assignments[tid]
        if policy == "soft":
            error = f.exception()
            assert error is None, f"task {tid} (planned on {planned}) was lost: {error!r}"
        elif planned == lost:
            assert outcomes[tid] in {lost, "ManagerLost", "NodeUnavailable"}, outcomes[tid]
        else:
            assert_on_node(cluster, f.result(), planned)
    if policy == "strict":
        assert {"ManagerLost", "NodeUnavailable"} & set(outcomes.values()), outcomes


@pytest.mark.parametrize("policy", ["soft", "strict"])
def test_a_block_whose_job_stays_pending_is_an_unavailable_node(
        cluster: SlurmCluster, tmp_path: Path, policy: str) -> None:
    """Four exclusive blocks on three nodes: the fourth job stays PENDING, so its
    placeholder is never bound. After the grace period its tasks run elsewhere (soft) or
    fail with NodeUnavailable naming it (strict); every other task runs on its bound node."""
    with planned_run(cluster, tmp_path, blocks=4, policy=policy, seconds=0.5) as run:
        executor, by_id, plan = run
        _, pending = concurrent.futures.wait(list(by_id.values()), timeout=240)
        bound = bindings(executor)
        states = sorted(cluster.job_state(job) for job in executor.blocks_to_job_id.values())
    assert not pending, f"{len(pending)} tasks never ended"
    assert states == ["PENDING", "RUNNING", "RUNNING", "RUNNING"]
    unbound = {placeholder_node(i) for i in range(4)} - set(bound)
    assert len(unbound) == 1
    assert unbound <= set(plan.assignments.values()), "the plan used every placeholder"
    for tid, f in by_id.items():
        planned = plan.assignments[tid]
        if planned in bound:
            assert_on_node(cluster, f.result(), bound[planned])
        elif policy == "soft":
            assert f.result()["host"] in {n.name for n in THREE}
        else:
            error = f.exception()
            assert isinstance(error, NodeUnavailable) and repr(planned) in str(error), error
