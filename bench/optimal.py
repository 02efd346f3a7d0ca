"""The best schedule a solver finds, and a bound it proves, for a trace on the cluster model.

Issue 8's lower bound (critical path on the fastest node, or all work over all slots) is
easy but can be far from what any schedule reaches on a narrow or long-chained DAG. This
module asks OR-Tools' CP-SAT solver for the best schedule on the same model the planners
see (task cost / node speed, ``slots`` tasks at a time per node, no transfer cost) within
a time limit, starting from the native HEFT's plan (so its best is never worse than
HEFT's). It returns the best makespan found (a schedule exists that reaches it) and the
solver's proven lower bound (no schedule beats it). Durations are rounded down to
``RESOLUTION`` seconds, so the proven bound holds for the exact durations too.
bench/makespan.py calls it for every trace and cluster shape it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common import Cluster
from generated import as_instance
from ortools.sat.python import cp_model
from parsl.dataflow.planning.heft import heft

from parsl_saga.traces import Graph

RESOLUTION = 1e-3  # seconds per time unit of the model


@dataclass(frozen=True)
class Best:
    makespan: float  # best schedule found, seconds
    bound: float  # proven: no schedule is shorter, seconds
    optimal: bool
    seconds: float  # solver wall time


def best_schedule(graph: Graph, cluster: Cluster, time_limit: float = 20.0,
                  workers: int = 2) -> Best:
    """CP-SAT's best makespan and proven bound for *graph* on *cluster*."""
    model = cp_model.CpModel()
    durations = {name: [math.floor(cost / speed / RESOLUTION) for speed in cluster.speeds]
                 for name, (cost, _) in graph.items()}
    horizon = sum(max(d) for d in durations.values())
    start, end, placed_on = {}, {}, {}
    per_node: list[list[cp_model.IntervalVar]] = [[] for _ in cluster.speeds]
    for name, options in durations.items():
        start[name] = model.new_int_var(0, horizon, f"start {name}")
        end[name] = model.new_int_var(0, horizon, f"end {name}")
        placed = [model.new_bool_var(f"{name} on {node}") for node in range(len(options))]
        placed_on[name] = placed
        model.add_exactly_one(placed)
        for node, (on_node, duration) in enumerate(zip(placed, options, strict=True)):
            model.add(end[name] == start[name] + duration).only_enforce_if(on_node)
            per_node[node].append(model.new_optional_fixed_size_interval_var(
                start[name], duration, on_node, f"{name} interval on {node}"))
    for intervals in per_node:
        if cluster.slots == 1:
            model.add_no_overlap(intervals)
        else:
            model.add_cumulative(intervals, [1] * len(intervals), cluster.slots)
    for name, (_, parents) in graph.items():
        for parent in parents:
            model.add(start[name] >= end[parent])
    for name, (node, begin) in heft_plan(graph, cluster).items():
        # Rounding every time down keeps the plan feasible with rounded-down durations.
        model.add_hint(start[name], math.floor(begin / RESOLUTION))
        for other, on_node in enumerate(placed_on[name]):
            model.add_hint(on_node, other == node)
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(makespan, list(end.values()))
    model.minimize(makespan)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = workers
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError(f"CP-SAT found no schedule in {time_limit} s ({solver.status_name()})")
    return Best(makespan=solver.objective_value * RESOLUTION,
                bound=solver.best_objective_bound * RESOLUTION,
                optimal=status == cp_model.OPTIMAL, seconds=solver.wall_time)


def heft_plan(graph: Graph, cluster: Cluster) -> dict[str, tuple[int, float]]:
    """The native HEFT's plan, one processor per worker slot: task -> (node, start)."""
    instance = as_instance(graph, cluster)
    plan = heft(instance.costs, instance.edges, instance.speeds, instance.bandwidth)
    return {name: (int(plan.processor[i]) // cluster.slots, float(plan.start[i]))
            for i, name in enumerate(graph)}
