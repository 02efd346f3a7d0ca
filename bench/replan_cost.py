"""What the interchange's re-plan of its queued tasks costs, against the native HEFT
planning the same tasks from scratch (issue 16: "measure what each costs").

Under adaptive plan execution the interchange re-plans the pinned tasks still queued when
a node the plan did not know joins
(``WorkStealing.replan_queued``: each task, in priority order, to the live node where it
is estimated to finish first). For each size (queued tasks x nodes, 8 workers per node)
it queues tasks with log-normal estimated costs, pinned at random, on nodes of speeds 1, 2
and 4, with every worker busy for a random time, and records the CPU time of a re-plan.
The baseline, measured in the same run on the same tasks: the DFK's native HEFT
(``heft()``) planning them over the same workers. Median and range of ``--repeats`` runs
each; the ratio is HEFT's median over the re-plan's.

    uv run python bench/replan_cost.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from common import write_result
from parsl.dataflow.planning.heft import heft
from parsl.executors.high_throughput.work_stealing import WorkStealing
from parsl.executors.node_affinity import COST_GROUP_KEY, ESTIMATED_COST_KEY, NODE_SPEED_KEY

SIZES = {"quick": [(1000, 4), (1000, 64), (10000, 64)],
         "full": [(1000, 4), (1000, 64), (10000, 16), (10000, 64)]}
WORKERS_PER_NODE = 8
SPEEDS = (1.0, 2.0, 4.0)


def queued_state(tasks: int, nodes: int, seed: int) -> dict[str, Any]:
    """The interchange's side of a re-plan: estimates, queues and workers' free times."""
    rng = random.Random(seed)
    names = [f"node-{i}" for i in range(nodes)]
    speeds = {name: rng.choice(SPEEDS) for name in names}
    stealing = WorkStealing()
    queues: dict[str, list[tuple[Any, ...]]] = {name: [] for name in names}
    costs = []
    for task_id in range(tasks):
        node = rng.choice(names)
        cost = rng.lognormvariate(0.0, 1.0)
        costs.append(cost)
        stealing.queued(task_id, node, {ESTIMATED_COST_KEY: cost, NODE_SPEED_KEY: speeds[node],
                                        COST_GROUP_KEY: f"app-{task_id % 5}"})
        queues[node].append((-task_id, -task_id, {"task_id": task_id}))
    free = {name: sorted(rng.uniform(0.0, 5.0) for _ in range(WORKERS_PER_NODE))
            for name in names}
    return {"stealing": stealing, "queues": queues, "free": free, "costs": costs,
            "speeds": [speeds[name] for name in names for _ in range(WORKERS_PER_NODE)]}


def cpu_times(run: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return times


def measure(tasks: int, nodes: int, repeats: int) -> dict[str, Any]:
    state = queued_state(tasks, nodes, seed=tasks * 1000 + nodes)
    processors = len(state["speeds"])
    bandwidth = np.full((processors, processors), math.inf)
    replan = cpu_times(lambda: state["stealing"].replan_queued(state["queues"], state["free"], 0.0),
                       repeats)
    plan = cpu_times(lambda: heft(state["costs"], [], state["speeds"], bandwidth), repeats)
    moved = len(state["stealing"].replan_queued(state["queues"], state["free"], 0.0))
    return {"tasks": tasks, "nodes": nodes, "workers": processors, "replan_s": replan,
            "heft_s": plan, "moved": moved,
            "ratio": statistics.median(plan) / statistics.median(replan)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for tasks, nodes in SIZES["quick" if args.quick else "full"]:
        row = measure(tasks, nodes, args.repeats)
        rows.append(row)
        replan_ms = statistics.median(row["replan_s"]) * 1e3
        heft_ms = statistics.median(row["heft_s"]) * 1e3
        print(f"{tasks} queued x {nodes} nodes: re-plan {replan_ms:.1f} ms, "
              f"HEFT {heft_ms:.1f} ms ({row['ratio']:.1f}x)", flush=True)
    path = write_result("replan_cost", {"mode": "quick" if args.quick else "full",
                                        "repeats": args.repeats,
                                        "workers_per_node": WORKERS_PER_NODE, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
