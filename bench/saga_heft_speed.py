"""CPU time of SAGA's HEFT on large random workflows (issue 9, "Speed").

Plans random DAGs of 1,000 and 5,000 tasks on a fully connected heterogeneous
network of 64 nodes with the SAGA installed in the running environment (the fork
tree by default) and prints the CPU seconds of each plan. To compare two versions
of SAGA, run the script once under each and compare the printed times.

    .venv/bin/python bench/saga_heft_speed.py [--tasks 1000 5000] [--nodes 64]
"""

from __future__ import annotations

import argparse
import platform
import random
import time

from saga import Network, NetworkEdge, NetworkNode, TaskGraph, TaskGraphEdge, TaskGraphNode
from saga.schedulers import HeftScheduler


def random_network(num_nodes: int, rng: random.Random) -> Network:
    nodes = [NetworkNode(name=f"n{i}", speed=rng.uniform(1, 4)) for i in range(num_nodes)]
    links = [
        NetworkEdge(source=f"n{i}", target=f"n{j}", speed=rng.uniform(1, 4))
        for i in range(num_nodes)
        for j in range(i + 1, num_nodes)
    ]
    return Network.create(nodes, links)


def random_task_graph(num_tasks: int, rng: random.Random) -> TaskGraph:
    """A DAG with one entry, one exit and 1-3 predecessors per task among the 50 before it.

    Built directly rather than with TaskGraph.create, whose source/sink detection
    is quadratic and would dominate the setup time.
    """
    names = [f"t{i}" for i in range(num_tasks)]
    tasks = [TaskGraphNode(name=name, cost=rng.uniform(1, 10)) for name in names]
    edges: dict[tuple[str, str], TaskGraphEdge] = {}
    has_successor = set()
    for i in range(1, num_tasks - 1):
        for j in rng.sample(range(max(0, i - 50), i), k=min(i, rng.randint(1, 3))):
            edges[(names[j], names[i])] = TaskGraphEdge(
                source=names[j], target=names[i], size=rng.uniform(1, 10)
            )
            has_successor.add(j)
    for i in range(num_tasks - 1):
        if i not in has_successor:
            edges[(names[i], names[-1])] = TaskGraphEdge(
                source=names[i], target=names[-1], size=rng.uniform(1, 10)
            )
    return TaskGraph(tasks=frozenset(tasks), dependencies=frozenset(edges.values()))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"machine: {cpu_model()}, Python {platform.python_version()}")
    for num_tasks in args.tasks:
        rng = random.Random(args.seed)
        network = random_network(args.nodes, rng)
        task_graph = random_task_graph(num_tasks, rng)
        start = time.process_time()
        schedule = HeftScheduler().schedule(network, task_graph)
        cpu = time.process_time() - start
        print(
            f"HEFT {num_tasks} tasks, {len(task_graph.dependencies)} dependencies, "
            f"{args.nodes} nodes: {cpu:.2f} s CPU (makespan {schedule.makespan:.2f})"
        )


if __name__ == "__main__":
    main()
