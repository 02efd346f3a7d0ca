"""Planned makespan and planning cost on larger instances: WfCommons recipes and random DAGs.

The real traces have 41-103 tasks. This generates instances of the same six families with
the ``wfcommons`` package's recipes (offline; seeded), 500 to 2,000 tasks, plus random
layered DAGs (bench/scheduler_cost.py's generator), and plans each on the model of the
benchmark cluster (bench/common.py: speeds 1, 1, 2, 4; ``--slots`` per node; no
communication cost, as in the real runs, where tasks exchange no data) with

- the fork's native HEFT, SAGA's HEFT and SAGA's CPOP: planned makespan and CPU time;
- a simulation of stock HTEx's policy, for scale only (no real run at these sizes): each
  task, once ready, goes to a random free worker, in the order tasks became ready. It is
  a model of stock Parsl, not a measurement, and the report says so.

Makespans are given as ratios to the lower bound (critical path on the fastest node, or
all work over all slots). Writes bench/results/generated.json.

    uv run --group bench python bench/generated.py [--quick] [--sizes 500 1000 2000]
"""

from __future__ import annotations

import argparse
import heapq
import logging
import random
import statistics
import time
from collections import deque
from typing import Any

import numpy as np
from common import SPEEDS, Cluster, lower_bound, same_makespan, write_result
from scheduler_cost import (
    Instance,
    cpu_seconds,
    layered_dag,
    native,
    saga_plan,
)

from parsl_saga.traces import Graph

FAMILIES = {  # family as the traces name it -> wfcommons recipe class
    "1000genome": "GenomeRecipe", "blast": "BlastRecipe", "epigenomics": "EpigenomicsRecipe",
    "montage": "MontageRecipe", "seismology": "SeismologyRecipe", "soykb": "SoykbRecipe",
}
MODES = {"quick": [500], "full": [500, 1000, 2000]}
SIMULATION_SEEDS = 5


def recipe_instance(family: str, tasks: int, seed: int) -> dict[str, tuple[float, list[str]]]:
    """One synthetic instance of *family* with about *tasks* tasks, as a Graph."""
    import wfcommons.wfchef.recipes as recipes
    from wfcommons import WorkflowGenerator

    # The recipes draw from both global generators; seeding them makes instances repeatable.
    random.seed(seed)
    np.random.seed(seed)
    recipe = getattr(recipes, FAMILIES[family]).from_num_tasks(tasks)
    workflow = WorkflowGenerator(recipe).build_workflow()
    return {name: (float(workflow.nodes[name]["task"].runtime), list(workflow.predecessors(name)))
            for name in workflow.nodes}


def random_instance(tasks: int, seed: int) -> dict[str, tuple[float, list[str]]]:
    """scheduler_cost.py's random layered DAG (its topology and costs) as a Graph."""
    dag = layered_dag(np.random.default_rng(seed), tasks, len(SPEEDS))
    parents: dict[int, list[str]] = {t: [] for t in range(tasks)}
    for parent, child, _ in dag.edges:
        parents[child].append(f"t{parent}")
    return {f"t{t}": (cost, parents[t]) for t, cost in enumerate(dag.costs)}


def as_instance(graph: Graph, cluster: Cluster) -> Instance:
    """The graph on one processor per worker slot; no data moves, so no link costs."""
    index = {name: i for i, name in enumerate(graph)}
    speeds = [s for s in cluster.speeds for _ in range(cluster.slots)]
    return Instance(costs=[max(cost, 1e-6) for cost, _ in graph.values()],
                    edges=[(index[p], index[name], 0.0)
                           for name, (_, parents) in graph.items() for p in parents],
                    speeds=speeds, bandwidth=np.full((len(speeds), len(speeds)), np.inf))


def simulate_stock(graph: Graph, cluster: Cluster, seed: int) -> float:
    """Makespan when each ready task goes to a random free worker, first ready first."""
    rng = random.Random(seed)
    speeds = [s for s in cluster.speeds for _ in range(cluster.slots)]
    waiting = {name: len(parents) for name, (_, parents) in graph.items()}
    children: dict[str, list[str]] = {name: [] for name in graph}
    for name, (_, parents) in graph.items():
        for p in parents:
            children[p].append(name)
    ready = deque(name for name, count in waiting.items() if count == 0)
    free = list(range(len(speeds)))
    running: list[tuple[float, str, int]] = []  # (end, task, worker)
    now = 0.0
    while ready or running:
        while ready and free:
            worker = free.pop(rng.randrange(len(free)))
            name = ready.popleft()
            heapq.heappush(running, (now + graph[name][0] / speeds[worker], name, worker))
        now, done, worker = heapq.heappop(running)
        free.append(worker)
        for child in children[done]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return now


def without_ties(instance: Instance, seed: int) -> Instance:
    """The instance with every cost and processor speed nudged apart by under 1e-6.

    Equal upward ranks or equal finish times leave HEFT a free choice, which the two
    implementations may make differently; with none left, they must agree.
    """
    rng = np.random.default_rng(seed)
    nudge = 1e-6 * rng.permutation(len(instance.costs)) / len(instance.costs)
    return Instance(costs=[c * (1 + d) for c, d in zip(instance.costs, nudge, strict=True)],
                    edges=instance.edges,
                    speeds=[s * (1 + 1e-7 * i) for i, s in enumerate(instance.speeds)],
                    bandwidth=instance.bandwidth)


def measure(name: str, graph: Graph, cluster: Cluster, repeats: int) -> dict[str, Any]:
    instance = as_instance(graph, cluster)
    bound = lower_bound(graph, cluster)
    native_times, native_makespan = cpu_seconds(lambda: native(instance), repeats)
    heft_s, heft_makespan = cpu_seconds(lambda: saga_plan(instance, "heft"), 1)
    tie_free = {}
    if not same_makespan(native_makespan, heft_makespan):
        nudged = without_ties(instance, seed=len(graph))
        tie_free = {"tie_free_heft": native(nudged),
                    "tie_free_saga_heft": saga_plan(nudged, "heft")}
    cpop_s, cpop_makespan = cpu_seconds(lambda: saga_plan(instance, "cpop"), 1)
    stock = statistics.median(simulate_stock(graph, cluster, seed)
                              for seed in range(SIMULATION_SEEDS))
    row = {"instance": name, "tasks": len(graph),
           "edges": len(instance.edges), "lower_bound": bound,
           "native_heft_s": native_times, "saga_heft_s": heft_s, "saga_cpop_s": cpop_s,
           "heft": native_makespan, "saga_heft": heft_makespan, "cpop": cpop_makespan,
           "stock_sim": stock, **tie_free}
    print(f"{name:<22} {len(graph):>5} tasks  HEFT/bound {native_makespan / bound:.3f}  "
          f"CPOP/bound {cpop_makespan / bound:.3f}  stock-sim/bound {stock / bound:.3f}  "
          f"native {native_times:.3f}s  SAGA HEFT {heft_s:.2f}s  CPOP {cpop_s:.2f}s",
          flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 tasks only")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--slots", type=int, default=2, help="worker slots per node")
    parser.add_argument("--repeats", type=int, default=3, help="native HEFT runs (best kept)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # SAGA warns on every graph with several sources
    mode = "quick" if args.quick else "full"
    sizes = args.sizes or MODES[mode]
    cluster = Cluster(SPEEDS, args.slots)
    print(f"{cluster.describe()}; planned makespans over the lower bound", flush=True)
    rows = []
    for size in sizes:
        for family in FAMILIES:
            started = time.perf_counter()
            graph = recipe_instance(family, size, seed=size)
            generated_s = time.perf_counter() - started
            rows.append(measure(f"{family}-{size}", graph, cluster, args.repeats)
                        | {"family": family, "generate_s": generated_s})
        rows.append(measure(f"random-{size}", random_instance(size, seed=size), cluster,
                            args.repeats) | {"family": "random"})
    path = write_result("generated", {"mode": mode, "speeds": list(cluster.speeds),
                                      "slots": cluster.slots, "sizes": sizes,
                                      "simulation_seeds": SIMULATION_SEEDS, "rows": rows})
    print(f"wrote {path}")
    disagree = [row["instance"] for row in rows if "tie_free_heft" in row
                and not same_makespan(row["tie_free_heft"], row["tie_free_saga_heft"])]
    if disagree:
        print(f"ERROR: native HEFT and SAGA HEFT disagree without ties on {', '.join(disagree)}")
    return 1 if disagree else 0


if __name__ == "__main__":
    raise SystemExit(main())
