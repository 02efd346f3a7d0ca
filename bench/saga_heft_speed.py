"""CPU time of SAGA's HEFT on large random workflows (issue 9, "Speed").

Plans random DAGs of 1,000 and 5,000 tasks on a fully connected heterogeneous
network of 64 nodes and prints the CPU seconds of each plan, for the fork's SAGA and
for the pinned upstream release with only the packaging patch (0001), each in its own
interpreter in the same run, with the ratio. The makespans must agree (up to float
rounding, bench/common.py's same_makespan: random costs leave HEFT no ties to break
differently); the script writes its results and exits 1 if they do not.

    .venv/bin/python bench/saga_heft_speed.py [--tasks 1000 5000] [--nodes 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, cpu_model, run_script, same_makespan

UPSTREAM_TREE = ROOT / ".cache" / "bench" / "saga-upstream"


def random_network(num_nodes: int, rng: random.Random):  # -> saga.Network
    from saga import Network, NetworkEdge, NetworkNode

    nodes = [NetworkNode(name=f"n{i}", speed=rng.uniform(1, 4)) for i in range(num_nodes)]
    links = [
        NetworkEdge(source=f"n{i}", target=f"n{j}", speed=rng.uniform(1, 4))
        for i in range(num_nodes)
        for j in range(i + 1, num_nodes)
    ]
    return Network.create(nodes, links)


def random_task_graph(num_tasks: int, rng: random.Random):  # -> saga.TaskGraph
    """A DAG with one entry, one exit and 1-3 predecessors per task among the 50 before it.

    Built directly rather than with TaskGraph.create, whose source/sink detection
    is quadratic and would dominate the setup time.
    """
    from saga import TaskGraph, TaskGraphEdge, TaskGraphNode

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


def measure(tasks: list[int], nodes: int, seed: int) -> None:
    """Print one JSON line per size: CPU seconds and makespan with the importable SAGA."""
    from saga.schedulers import HeftScheduler

    for num_tasks in tasks:
        rng = random.Random(seed)
        network = random_network(nodes, rng)
        task_graph = random_task_graph(num_tasks, rng)
        start = time.process_time()
        schedule = HeftScheduler().schedule(network, task_graph)
        cpu = time.process_time() - start
        print(json.dumps({"tasks": num_tasks, "edges": len(task_graph.dependencies),
                          "cpu": cpu, "makespan": schedule.makespan}))


def upstream_saga_src() -> Path:
    """The pinned anrg-saga with only the packaging patch, built once under .cache/."""
    if not UPSTREAM_TREE.exists():
        run_script("fork.py", "build", str(UPSTREAM_TREE), "--fork", "saga", "--patches", "1")
    return UPSTREAM_TREE / "src"


def run_child(args: argparse.Namespace, pythonpath: Path | None) -> list[dict[str, float]]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    cmd = [sys.executable, __file__, "--child", "--nodes", str(args.nodes),
           "--seed", str(args.seed), "--tasks", *map(str, args.tasks)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=None,
                        help="sizes to plan (default: 1000 5000; --quick: 1000)")
    parser.add_argument("--quick", action="store_true", help="only the 1,000-task case")
    parser.add_argument("--out", type=Path, default=RESULTS / "saga_heft_speed.json")
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tasks is None:
        args.tasks = [1000] if args.quick else [1000, 5000]
    if args.child:
        measure(args.tasks, args.nodes, args.seed)
        return

    print(f"machine: {cpu_model()}, Python {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"one run each, in the same session")
    upstream = run_child(args, upstream_saga_src())
    fork_rows = run_child(args, None)
    rows = []
    for up, ours in zip(upstream, fork_rows, strict=True):
        same = same_makespan(up["makespan"], ours["makespan"])
        print(f"HEFT {up['tasks']} tasks, {up['edges']} dependencies, {args.nodes} nodes: "
              f"upstream {up['cpu']:.2f} s, fork {ours['cpu']:.2f} s CPU, "
              f"speed-up {up['cpu'] / ours['cpu']:.1f}x, same makespan: {same}")
        rows.append({"tasks": up["tasks"], "edges": up["edges"], "nodes": args.nodes,
                     "upstream_cpu": up["cpu"], "fork_cpu": ours["cpu"], "same_makespan": same})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seed": args.seed, "rows": rows}, indent=2))
    differ = [r["tasks"] for r in rows if not r["same_makespan"]]
    if differ:
        raise SystemExit(f"FAIL: upstream SAGA's HEFT and the fork's planned different "
                         f"makespans for {differ} tasks")


if __name__ == "__main__":
    main()
