"""The diamond DAG on a Kubernetes (kind) cluster, one worker pool pinned to each node.

The driver runs on the machine that hosts the cluster. It asks the KubernetesProvider for
the cluster's usable nodes (``get_graph_nodes``: Node objects, not pods), starts one HTEx
worker pool per node (blocks pinned to nodes; each pool reports its node's name from
``PARSL_NODE_NAME``, set from the pod's ``spec.nodeName``), and runs the diamond
t1 (0.5 s) -> t2 (2.0 s), t3 (1.0 s) -> t4 (0.5 s) plus a fan-out, each task pinned with
the resource specification key ``_saga_node_affinity`` by a fixed plan (the longest task
on the fastest node). Each task returns the node it ran on; the script prints the mapping
and the number of distinct nodes, and exits 1 if any task ran elsewhere.

See docs/kubernetes.md for creating the cluster and loading the image, then:

    .venv/bin/python -P scripts/test.py --image parsl-saga-worker:dev --namespace parsl
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import parsl
from parsl.addresses import address_by_route
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import KubernetesProvider

AFFINITY_KEY = "_saga_node_affinity"
FANOUT = 6
LABEL = "kind"


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    node: str
    after: tuple[str, ...] = ()


def plan(nodes: Sequence[Mapping[str, Any]]) -> list[Step]:
    """A fixed plan over *nodes* (``get_graph_nodes`` records), parents before children.

    Nodes are ranked by speed (fastest first, then by name): t2, the longest task, and t4
    go to the fastest node, t3 to the second, t1 to the third; the fan-out goes round-robin.
    """
    if not nodes:
        raise ValueError("no nodes to plan on")
    ranked = [n["name"] for n in sorted(nodes, key=lambda n: (-n["speed"], n["name"]))]

    def at(i: int) -> str:
        return ranked[i % len(ranked)]

    steps = [Step("t1", 0.5, at(2)), Step("t2", 2.0, at(0), ("t1",)),
             Step("t3", 1.0, at(1), ("t1",)), Step("t4", 0.5, at(0), ("t2", "t3"))]
    steps += [Step(f"f{i}", 0.25, at(i)) for i in range(FANOUT)]
    return steps


def discover_nodes(image: str, namespace: str) -> list[Mapping[str, Any]]:
    """The cluster's usable nodes, from the provider's node discovery."""
    return list(KubernetesProvider(image=image, namespace=namespace).describe_nodes())


def build_config(image: str, namespace: str, nodes: list[str], address: str,
                 run_dir: str) -> Config:
    """One HTEx worker pool per node in *nodes*, each block's pod pinned to its node.

    ``encrypted=False``: kind's nodes do not share the driver's file system, so the pools
    cannot read the CurveZMQ certificates in the run directory. Task and result traffic
    between the pods and the driver is then unauthenticated and in clear text; see
    docs/kubernetes.md.
    """
    if not nodes:
        raise ValueError("no nodes to start worker pools on")
    provider = KubernetesProvider(
        image=image,
        namespace=namespace,
        pod_name="parsl-saga-worker",
        nodes=list(nodes),
        init_blocks=len(nodes), min_blocks=len(nodes), max_blocks=len(nodes),
        init_cpu=0.25, max_cpu=1, init_mem="256Mi", max_mem="1Gi",
        # A pool's block fails (and is replaced on its node) when its pod has not
        # started after 5 minutes.
        pending_timeout=300,
    )
    executor = HighThroughputExecutor(
        label=LABEL,
        address=address,
        encrypted=False,
        max_workers_per_node=2,
        provider=provider,
    )
    return Config(executors=[executor], run_dir=run_dir, strategy="simple",
                  usage_tracking=0)


@parsl.python_app
def stage(seconds: float, *upstream: str) -> str:
    """Sleep *seconds*; return the node this task ran on."""
    import os
    import time

    time.sleep(seconds)
    return os.environ.get("PARSL_NODE_NAME", "?")


def submit(steps: list[Step]) -> dict[str, Future[str]]:
    futures: dict[str, Future[str]] = {}
    for step in steps:
        futures[step.name] = stage(step.seconds, *(futures[a] for a in step.after),
                                   parsl_resource_specification={AFFINITY_KEY: step.node})
    return futures


def report(steps: list[Step], ran: dict[str, str]) -> int:
    """Print where each task ran; return how many ran off their planned node."""
    print(f"{'task':<5} {'planned':<28} {'ran on':<28}")
    wrong = 0
    for step in steps:
        ok = ran[step.name] == step.node
        wrong += not ok
        print(f"{step.name:<5} {step.node:<28} {ran[step.name]:<28}"
              f"{'' if ok else '  <-- WRONG NODE'}")
    used = sorted(set(ran.values()))
    print(f"distinct nodes used: {len(used)} ({', '.join(used)})")
    return wrong


def wait_for_pools(executor: HighThroughputExecutor, nodes: list[str], timeout_s: float) -> None:
    """Wait until every node's pool registered, or the timeout; say which are missing.

    A missing pool does not stop the run: its pod is reported by the provider (Pending
    with the scheduler's reason, failed after ``pending_timeout``), and the executor's
    node affinity policy decides what happens to the tasks pinned to that node.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        seen = {m.get("node_name", m.get("hostname")) for m in executor.connected_managers()}
        missing = [n for n in nodes if n not in seen]
        if not missing:
            print(f"all {len(nodes)} pools registered")
            return
        if time.monotonic() > deadline:
            print(f"after {timeout_s:.0f}s no pool on {missing}; running anyway")
            return
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--image", default="parsl-saga-worker:dev",
                        help="worker image, loaded into kind with `kind load docker-image`")
    parser.add_argument("--namespace", default="parsl")
    parser.add_argument("--address", default=None,
                        help="address the pods reach the driver at (default: this machine's "
                             "address on its default route)")
    parser.add_argument("--pool-timeout", type=float, default=300,
                        help="seconds to wait for every node's pool before submitting")
    args = parser.parse_args(argv)

    graph = discover_nodes(args.image, args.namespace)
    print("usable nodes:")
    for n in graph:
        print(f"  {n['name']:<28} slots={n['slots']:<3} speed={n['speed']:<5} "
              f"bandwidth={n['bandwidth_mbit']:g} Mbit/s")
    nodes = [n["name"] for n in graph]
    steps = plan(graph)
    address = args.address or address_by_route()
    with tempfile.TemporaryDirectory(prefix="parsl-saga-kind-") as run_dir, \
            parsl.load(build_config(args.image, args.namespace, nodes, address, run_dir)) as dfk:
        executor = dfk.executors[LABEL]
        assert isinstance(executor, HighThroughputExecutor)
        wait_for_pools(executor, nodes, args.pool_timeout)
        started = time.monotonic()
        futures = submit(steps)
        ran = {name: f.result() for name, f in futures.items()}
        print(f"ran {len(steps)} tasks in {time.monotonic() - started:.1f}s")
    wrong = report(steps, ran)
    if wrong:
        print(f"FAIL: {wrong} task(s) ran off their planned node")
        return 1
    print("OK: every task ran on its planned node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
