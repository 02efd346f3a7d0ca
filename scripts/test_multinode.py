"""Pinned tasks on a local multi-node cluster: does every task run on its planned node?

The diamond DAG t1 (0.5 s) -> t2 (2.0 s), t3 (1.0 s) -> t4 (0.5 s, after t2 and t3) and a
fan-out of 8 tasks, each pinned to a named node with the resource specification key
``node_affinity``, run on a LocalClusterProvider (network namespaces as root, plain
processes otherwise). Each task returns the node it ran on; the script prints the mapping
and the number of distinct nodes, and exits 1 if any task ran elsewhere.

    .venv/bin/python -P scripts/test_multinode.py [--isolation auto|netns|process]
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import parsl
from parsl.config import Config

from parsl_saga.local_cluster import ClusterNode, cluster_executor
from parsl_saga.pinned import Step, diamond_and_fanout, report, run_steps
from parsl_saga.pools import wait_for_pools

NODES = [ClusterNode("node-a", workers=2), ClusterNode("node-b", workers=2, speed=1.5),
         ClusterNode("node-c", workers=1, speed=0.75)]
FANOUT = 8


def workflow(nodes: list[str]) -> list[Step]:
    """The diamond and the fan-out, pinned round-robin over *nodes*."""
    return diamond_and_fanout([nodes[i % len(nodes)] for i in (0, 1, 2, 0)], nodes, FANOUT)


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
        ran = run_steps(steps)
    return report(steps, ran)


if __name__ == "__main__":
    sys.exit(main())
