"""Planning cost: the fork's native HEFT against SAGA's HEFT and CPOP.

For each size (tasks x nodes) it builds one random layered DAG with real-valued costs
and a heterogeneous, fully connected network, plans it with each scheduler and
records the CPU time (process time; the median and range of ``--repeats`` runs for native
HEFT, one run for SAGA's schedulers, which take seconds to minutes). Native HEFT and
SAGA's HEFT must give the same makespan on every case; the script exits non-zero if
they do not. Ratios are SAGA time over native time, measured in the same run.

    uv run python bench/scheduler_cost.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import networkx as nx
import numpy as np
from common import same_makespan, write_result
from parsl.dataflow.planning.heft import heft

# SAGA takes about 20 s per scheduler at 5,000 tasks on 64 nodes (2 busy cores), and
# roughly four times that at 10,000: the full run pays it to cover the range.
SAGA_TASK_LIMIT = {"quick": 1000, "full": 10000}
SIZES = {
    "quick": [(100, 4), (1000, 16), (1000, 64), (5000, 64), (10000, 64)],
    "full": [(100, 4), (100, 64), (1000, 4), (1000, 16), (1000, 64), (5000, 16), (5000, 64),
             (10000, 16), (10000, 64)],
}


@dataclass
class Instance:
    costs: list[float]
    edges: list[tuple[int, int, float]]
    speeds: list[float]
    bandwidth: np.ndarray


@dataclass
class Row:
    tasks: int
    nodes: int
    edges: int
    native_s: float  # median of native_runs
    native_runs: list[float]
    saga_heft_s: float | None
    saga_cpop_s: float | None
    native_makespan: float
    saga_heft_makespan: float | None
    saga_cpop_makespan: float | None


def layered_dag(rng: np.random.Generator, tasks: int, nodes: int) -> Instance:
    """About sqrt(tasks) layers; each task depends on 1-3 tasks of the layer before."""
    width = max(1, round(math.sqrt(tasks)))
    layer = np.arange(tasks) // width
    edges = []
    for child in range(width, tasks):
        previous = np.flatnonzero(layer == layer[child] - 1)
        for parent in rng.choice(previous, size=min(len(previous), rng.integers(1, 4)),
                                 replace=False):
            edges.append((int(parent), child, float(rng.uniform(0.1, 5.0))))
    bandwidth = rng.uniform(0.5, 5.0, size=(nodes, nodes))
    bandwidth = np.triu(bandwidth, 1) + np.triu(bandwidth, 1).T
    np.fill_diagonal(bandwidth, np.inf)
    return Instance(costs=rng.uniform(0.5, 10.0, size=tasks).tolist(), edges=edges,
                    speeds=rng.uniform(0.5, 4.0, size=nodes).tolist(), bandwidth=bandwidth)


def cpu_runs(plan: Callable[[], float], repeats: int) -> tuple[list[float], float]:
    """CPU time of each of ``repeats`` runs, and the makespan the plan reports."""
    times, makespan = [], math.nan
    for _ in range(repeats):
        start = time.process_time()
        makespan = plan()
        times.append(time.process_time() - start)
    return times, makespan


def cpu_seconds(plan: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Median CPU time of ``repeats`` runs, and the makespan the plan reports."""
    times, makespan = cpu_runs(plan, repeats)
    return statistics.median(times), makespan


def native(instance: Instance) -> float:
    return heft(instance.costs, instance.edges, instance.speeds, instance.bandwidth).makespan


def saga_plan(instance: Instance, scheduler_name: str) -> float:
    import saga
    from saga.schedulers import CpopScheduler, HeftScheduler

    graph = nx.DiGraph()
    graph.add_nodes_from((f"t{t}", {"weight": c}) for t, c in enumerate(instance.costs))
    graph.add_edges_from((f"t{a}", f"t{b}", {"weight": s}) for a, b, s in instance.edges)
    network = nx.Graph()
    network.add_nodes_from((f"n{p}", {"weight": s}) for p, s in enumerate(instance.speeds))
    count = len(instance.speeds)
    network.add_edges_from((f"n{a}", f"n{b}", {"weight": float(instance.bandwidth[a, b])})
                           for a in range(count) for b in range(a, count))
    scheduler = HeftScheduler() if scheduler_name == "heft" else CpopScheduler()
    schedule = scheduler.schedule(saga.Network.from_nx(network), saga.TaskGraph.from_nx(graph))
    return max(t.end for tasks in schedule.mapping.values() for t in tasks)


def measure(tasks: int, nodes: int, mode: str, repeats: int) -> Row:
    instance = layered_dag(np.random.default_rng(tasks * 1000 + nodes), tasks, nodes)
    native_runs, native_makespan = cpu_runs(lambda: native(instance), repeats)
    row = Row(tasks, nodes, len(instance.edges), statistics.median(native_runs), native_runs,
              None, None, native_makespan, None, None)
    if tasks <= SAGA_TASK_LIMIT[mode]:
        row.saga_heft_s, row.saga_heft_makespan = cpu_seconds(
            lambda: saga_plan(instance, "heft"), 1)
        row.saga_cpop_s, row.saga_cpop_makespan = cpu_seconds(
            lambda: saga_plan(instance, "cpop"), 1)
    return row


def ratio(numerator: float | None, denominator: float) -> str:
    return "-" if numerator is None else f"{numerator / denominator:.1f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, SAGA up to 1,000 tasks")
    parser.add_argument("--repeats", type=int, default=5, help="native runs per size")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # SAGA warns on every graph with several sources
    mode = "quick" if args.quick else "full"

    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"python {platform.python_version()}; CPU seconds, median of {args.repeats} (native)")
    print(f"{'tasks':>6} {'nodes':>5} {'edges':>6} {'native':>8} {'SAGA HEFT':>10} "
          f"{'ratio':>7} {'SAGA CPOP':>10} {'ratio':>7}  same makespan")
    rows, mismatches = [], 0
    for tasks, nodes in SIZES[mode]:
        row = measure(tasks, nodes, mode, args.repeats)
        rows.append(row)
        same = (None if row.saga_heft_makespan is None
                else same_makespan(row.native_makespan, row.saga_heft_makespan))
        mismatches += same is False
        saga_heft = "-" if row.saga_heft_s is None else f"{row.saga_heft_s:.3f}"
        saga_cpop = "-" if row.saga_cpop_s is None else f"{row.saga_cpop_s:.3f}"
        print(f"{tasks:>6} {nodes:>5} {row.edges:>6} {row.native_s:>8.3f} {saga_heft:>10} "
              f"{ratio(row.saga_heft_s, row.native_s):>7} {saga_cpop:>10} "
              f"{ratio(row.saga_cpop_s, row.native_s):>7}  {'-' if same is None else same}",
              flush=True)

    path = write_result("scheduler_cost", {"mode": mode, "repeats": args.repeats,
                                           "saga_task_limit": SAGA_TASK_LIMIT[mode],
                                           "rows": [asdict(r) for r in rows]})
    print(f"wrote {path}")
    if mismatches:
        print(f"ERROR: native HEFT and SAGA HEFT disagree on {mismatches} case(s)")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
