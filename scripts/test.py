"""The diamond DAG on a Kubernetes (kind) cluster, one worker pool pinned to each node.

The driver runs on the machine that hosts the cluster. It asks the KubernetesProvider for
the cluster's usable nodes (``get_graph_nodes``: Node objects, not pods), starts one HTEx
worker pool per node (blocks pinned to nodes; each pool reports its node's name from
``PARSL_NODE_NAME``, set from the pod's ``spec.nodeName``), and runs the diamond
t1 (0.5 s) -> t2 (2.0 s), t3 (1.0 s) -> t4 (0.5 s) plus a fan-out, each task pinned with
the resource specification key ``node_affinity`` by a fixed plan (the longest task
on the fastest node). Each task returns the node it ran on; the script prints the mapping
and the number of distinct nodes, and exits 1 if any task ran elsewhere.

See docs/kubernetes.md for creating the cluster and loading the image, then:

    .venv/bin/python -P scripts/test.py --image parsl-saga-worker:dev --namespace parsl
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import parsl
from parsl.addresses import address_by_route
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import KubernetesProvider

from parsl_saga.pinned import Step, diamond_and_fanout, report, run_steps
from parsl_saga.pools import wait_for_pools

FANOUT = 6
LABEL = "kind"


def plan(nodes: Sequence[Mapping[str, Any]]) -> list[Step]:
    """A fixed plan over *nodes* (``get_graph_nodes`` records), parents before children.

    Nodes are ranked by speed (fastest first, then by name): t2, the longest task, and t4
    go to the fastest node, t3 to the second, t1 to the third; the fan-out goes round-robin.
    """
    if not nodes:
        raise ValueError("no nodes to plan on")
    ranked = [n["name"] for n in sorted(nodes, key=lambda n: (-n["speed"], n["name"]))]
    diamond = [ranked[i % len(ranked)] for i in (2, 0, 1, 0)]
    return diamond_and_fanout(diamond, ranked, FANOUT)


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
        try:
            wait_for_pools(executor, nodes, args.pool_timeout)
            print(f"all {len(nodes)} pools registered")
        except TimeoutError as missing:
            # A missing pool does not stop the run: the provider reports its pod (Pending
            # with the scheduler's reason, failed after pending_timeout), and the
            # executor's node affinity policy decides what happens to its pinned tasks.
            print(f"{missing}; running anyway")
        ran = run_steps(steps)
    return report(steps, ran)


if __name__ == "__main__":
    sys.exit(main())
