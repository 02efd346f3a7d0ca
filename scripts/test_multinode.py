"""Pinned tasks on a local multi-node cluster: does every task run on its planned node?

The diamond DAG t1 (0.5 s) -> t2 (2.0 s), t3 (1.0 s) -> t4 (0.5 s, after t2 and t3) and a
fan-out of 8 tasks, each pinned to a named node with the resource specification key
``_saga_node_affinity``, run on a LocalClusterProvider (network namespaces as root, plain
processes otherwise). Each task returns the node it ran on; the script prints the mapping
and the number of distinct nodes, and exits 1 if any task ran elsewhere.

    .venv/bin/python -P scripts/test_multinode.py [--isolation auto|netns|process]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import parsl
from parsl.config import Config

from parsl_saga.local_cluster import ClusterNode, cluster_executor, wait_for_pools

AFFINITY_KEY = "_saga_node_affinity"
NODES = [ClusterNode("node-a", workers=2), ClusterNode("node-b", workers=2, speed=1.5),
         ClusterNode("node-c", workers=1, speed=0.75)]
FANOUT = 8


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    node: str
    after: tuple[str, ...] = ()


def workflow(nodes: list[str]) -> list[Step]:
    """The diamond and the fan-out, pinned round-robin over *nodes*, parents first."""
    def at(i: int) -> str:
        return nodes[i % len(nodes)]
    steps = [Step("t1", 0.5, at(0)), Step("t2", 2.0, at(1), ("t1",)),
             Step("t3", 1.0, at(2), ("t1",)), Step("t4", 0.5, at(0), ("t2", "t3"))]
    steps += [Step(f"f{i}", 0.25, at(i)) for i in range(FANOUT)]
    return steps


@parsl.python_app
def stage(seconds: float, *upstream: str,
          parsl_resource_specification: dict[str, Any] | None = None) -> str:
    """Do *seconds* of reference-speed work; return the node it ran on.

    Parsl passes the resource specification on to the app, so the app must accept it.
    """
    import os
    import socket

    from parsl_saga.local_cluster import work

    work(seconds)
    # As the fork's worker pool names its node: PARSL_NODE_NAME, else the host name.
    return os.environ.get("PARSL_NODE_NAME") or socket.gethostname()


def submit(steps: list[Step], pinned: bool = True,
           app: Callable[..., Future[str]] = stage) -> dict[str, Future[str]]:
    futures: dict[str, Future[str]] = {}
    for step in steps:
        spec = {AFFINITY_KEY: step.node} if pinned else {}
        futures[step.name] = app(step.seconds, *(futures[a] for a in step.after),
                                 parsl_resource_specification=spec)
    return futures


def report(steps: list[Step], ran: dict[str, str], pinned: bool = True) -> int:
    """Print where each task ran; return how many ran off their planned node."""
    print(f"{'task':<5} {'planned':<8} {'ran on':<8}")
    wrong = 0
    for step in steps:
        ok = ran[step.name] == step.node
        wrong += pinned and not ok
        mark = "" if ok or not pinned else "  <-- WRONG NODE"
        print(f"{step.name:<5} {step.node:<8} {ran[step.name]:<8}{mark}")
    print(f"distinct nodes used: {len(set(ran.values()))} ({', '.join(sorted(set(ran.values())))})")
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isolation", choices=["auto", "netns", "process"], default="auto")
    args = parser.parse_args()

    steps = workflow([n.name for n in NODES])
    executor = cluster_executor("cluster", NODES, isolation=args.isolation)
    print(f"cluster: {len(NODES)} nodes, isolation={executor.provider.isolation}, "
          f"interchange at {executor.provider.address}")
    with tempfile.TemporaryDirectory(prefix="parsl-saga-multinode-") as run_dir, \
            parsl.load(Config(executors=[executor], run_dir=run_dir, strategy="none")):
        wait_for_pools(executor, len(NODES))
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
