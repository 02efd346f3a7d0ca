"""Makespan of the real traces in real execution: the fork's planning against stock Parsl.

On the local multi-node cluster (src/parsl_saga/local_cluster.py; nodes at speeds 1, 1, 2
and 4, ``--slots`` workers each) every task of a WfCommons trace sleeps for its recorded
runtime x scale / its node's speed. Each trace is scaled so that its lower bound (the
critical path on the fastest node, or all work over all slots, whichever is larger) is
``--target`` seconds. Configurations, each in its own interpreter and cluster (``--repeats``
clusters per configuration, interleaved so drift in machine load hits all alike; each
cluster runs every trace ``--rounds`` times, also interleaved):

- ``stock``: the pinned upstream Parsl, unpatched, in its own environment
  (.cache/baseline, built by scripts/parsl_suite.py): HTEx hands each ready task to a
  random pool with a free worker;
- ``fork-heft``, ``fork-cpop``: the fork with ``Config(dag_scheduler=...)``, the whole
  trace submitted deferred in ``with dfk.planned():`` with per-task ``cost`` hints;
- ``fork-none`` (full mode): the fork with no scheduler, as stock.

Before the runs, OR-Tools' CP-SAT looks for the best schedule of each trace on the same
model (bench/optimal.py): its best makespan and the bound it proves show how far any
planner could get, where issue 8's bound is loose.

The makespan is wall time from the first submit to the last result, planning included.
For planned runs it also records the planned makespan, the actual one from the plan's
launch, the time spent submitting and in ``execute()``, and tasks that ran off plan.
Writes bench/results/makespan.json.

    uv run python bench/makespan.py [--quick] [--slots 1 4] [--target 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    SPEEDS,
    Cluster,
    critical_path,
    lower_bound,
    stock_python,
    traces,
    write_result,
)

from parsl_saga.apps import sleep_task
from parsl_saga.traces import Graph, read_trace, scaled, submit_graph

SCHEDULERS = {"stock": None, "fork-none": None, "fork-heft": "heft", "fork-cpop": "cpop"}


@dataclass(frozen=True)
class Mode:
    configs: list[str]
    slots: list[int]  # cluster shapes: worker slots per node
    repeats: int  # clusters per configuration and shape
    rounds: int  # runs of every trace per cluster
    target: float  # lower bound per trace, seconds
    solver_seconds: float  # CP-SAT's time limit per trace (bench/optimal.py)


# A cluster takes 5-30 s to start on 2 busy cores, so rounds within one cluster are the
# cheap repeats; separate clusters (full mode) also catch start-to-start variation.
MODES = {
    "quick": Mode(["stock", "fork-heft"], [2], 1, 3, 1.0, 3.0),
    "full": Mode(["stock", "fork-none", "fork-heft", "fork-cpop"], [1, 4], 2, 3, 5.0, 20.0),
}
WARM_UP_SECONDS = 0.3


# -- in the child: one configuration, one cluster, every trace in turn ----------------------

def submit(graph: Graph, hints: bool) -> dict[str, Any]:
    """Submit in dependency order; with *hints*, tell the planner each task's cost.

    Stock HTEx rejects resource specification keys it does not know, so stock runs
    submit without the hint (scripts/plan_workflow.py's submit always sends it).
    """
    def one(cost: float, parents: list[Any]) -> Any:
        spec = {"parsl_resource_specification": {"cost": cost}} if hints else {}
        return sleep_task(cost, *parents, **spec)

    return submit_graph(graph, one)


def warm_up(slots: int) -> None:
    """Run a task on every worker first, so no timed task pays a worker's imports.

    As many concurrent tasks as workers: with every worker free, stock HTEx and the
    fork's unpinned path both give each pool one task per free worker.
    """
    for _ in range(2):
        futures = [sleep_task(WARM_UP_SECONDS) for _ in range(slots * len(SPEEDS))]
        [f.result() for f in futures]


def run_case(dfk: Any, case: dict[str, Any], planned: bool) -> dict[str, Any]:
    graph = scaled(read_trace(Path(case["path"])), case["scale"])
    start = time.perf_counter()
    if planned:
        with dfk.planned():
            futures = submit(graph, hints=True)
            submitted = time.perf_counter()
    else:
        futures = submit(graph, hints=False)
        submitted = time.perf_counter()
    executed = time.perf_counter()
    ran_on = {name: f.result() for name, f in futures.items()}
    result: dict[str, Any] = {
        "trace": case["trace"], "makespan": time.perf_counter() - start,
        "submit_s": submitted - start, "execute_s": executed - submitted,
        "tasks_per_node": dict(Counter(ran_on.values()))}
    if planned:
        plan = dfk.plan
        result |= {"planned": plan.makespan, "actual_from_launch": plan.actual_makespan,
                   "off_plan": sum(ran_on[n] != plan.assignments[f.tid]
                                   for n, f in futures.items()),
                   **latency(plan.tasks.values())}
    return result


def latency(tasks: Any) -> dict[str, float]:
    """How much longer tasks took, from launch to result, than the plan says they run.

    The plan models run time only; the excess is Parsl's dispatch and return path plus any
    wait for the node's worker, and shows where planned and actual makespans part.
    """
    planned = [t.end - t.start for t in tasks]
    excess = [t.actual_end - t.actual_start - (t.end - t.start) for t in tasks]
    return {"task_planned_s": statistics.median(planned),
            "task_excess_s": statistics.median(excess)}


def child(config: str, cases: list[dict[str, Any]], slots: int, rounds: int) -> None:
    import parsl
    from parsl.config import Config

    from parsl_saga.local_cluster import ClusterNode, cluster_executor
    from parsl_saga.pools import wait_for_pools

    cluster = Cluster(SPEEDS, slots)
    nodes = [ClusterNode(name, workers=slots, speed=speed)
             for name, speed in zip(cluster.node_names, cluster.speeds, strict=True)]
    executor = cluster_executor("cluster", nodes)
    scheduler = SCHEDULERS[config]
    planning = {"dag_scheduler": scheduler} if scheduler else {}
    with tempfile.TemporaryDirectory(prefix="parsl-saga-bench-") as run_dir, \
            parsl.load(Config(executors=[executor], run_dir=run_dir, strategy="none",
                              **planning)) as dfk:
        wait_for_pools(executor, len(nodes))
        if scheduler:
            dfk.execute()  # nothing deferred yet: from now on only planned() blocks defer
        warm_up(slots)
        for _ in range(rounds):
            for case in cases:
                print(json.dumps(run_case(dfk, case, planned=scheduler is not None)),
                      flush=True)


# -- in the parent ------------------------------------------------------------------------

def python_for(config: str) -> Path:
    return stock_python() if config == "stock" else Path(sys.executable)


def run_config(config: str, cases: list[dict[str, Any]], slots: int, rounds: int
               ) -> list[dict[str, Any]]:
    return run_child(__file__, config, cases, ["--slots", str(slots), "--rounds", str(rounds)])


def run_child(script: str, config: str, cases: list[dict[str, Any]], args: list[str],
              env: Mapping[str, str] | None = None, timeout_s: float = 3600
              ) -> list[dict[str, Any]]:
    """Run ``script --child config --cases <file> *args`` in *config*'s interpreter (stock
    Parsl's or the fork's), with *env* added to this environment; the JSON lines it prints.
    """
    python = python_for(config)
    # Workers unpickle parsl_saga.apps' sleep_task by reference, and stock Parsl's
    # environment does not have this project installed.
    env = {**os.environ, **(env or {}),
           "PYTHONPATH": str(ROOT / "src"),
           # Stock HTEx starts its interchange and pools as scripts on PATH.
           "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="bench-cases-") as f:
        json.dump(cases, f)
        f.flush()
        proc = subprocess.run(
            [str(python), script, "--child", config, "--cases", f.name, *args],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def make_cases(target: float, cluster: Cluster) -> list[dict[str, Any]]:
    """Each trace with the scale that puts its lower bound at *target* seconds."""
    return [make_case(path, target, cluster) for path in traces()]


def make_case(path: Path, target: float, cluster: Cluster) -> dict[str, Any]:
    """The trace at *path* with the scale that puts its lower bound at *target* seconds."""
    graph = read_trace(path)
    scale = target / lower_bound(scaled(graph, 1.0), cluster)
    run = scaled(graph, scale)
    return {"trace": trace_name(path), "path": str(path), "scale": scale,
            "tasks": len(graph), "edges": sum(len(p) for _, p in graph.values()),
            "lower_bound": lower_bound(run, cluster), "critical_path": critical_path(run),
            "work": sum(c for c, _ in run.values())}


def trace_name(path: Path) -> str:
    """A trace's short name: its workflow family, e.g. ``epigenomics``."""
    return path.stem.split("-chameleon")[0]


def best_schedules(cases: list[dict[str, Any]], cluster: Cluster, seconds: float) -> None:
    """Add CP-SAT's best schedule and proven bound to each case (bench/optimal.py)."""
    from optimal import best_schedule

    for case in cases:
        best = best_schedule(scaled(read_trace(Path(case["path"])), case["scale"]), cluster,
                             seconds)
        case["best"] = asdict(best)
        print(f"  {case['trace']}: CP-SAT best {best.makespan:.2f} s, proven bound "
              f"{best.bound:.2f} s{' (optimal)' if best.optimal else ''}", flush=True)


def run_shape(mode: Mode, slots: int) -> dict[str, Any]:
    cluster = Cluster(SPEEDS, slots)
    cases = make_cases(mode.target, cluster)
    best_schedules(cases, cluster, mode.solver_seconds)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in mode.configs}
    print(f"{cluster.describe()}; {len(cases)} traces", flush=True)
    for repeat in range(mode.repeats):
        # Rotate the order too, so no configuration always runs first on a fresh machine.
        shift = repeat % len(mode.configs)
        for config in mode.configs[shift:] + mode.configs[:shift]:
            started = time.perf_counter()
            results = run_config(config, cases, slots, mode.rounds)
            runs[config] += results
            print(f"  {config} (cluster {repeat + 1}/{mode.repeats}, "
                  f"{time.perf_counter() - started:.0f} s): "
                  + ", ".join(f"{r['trace']} {r['makespan']:.2f}" for r in results), flush=True)
    return {"slots": slots, "speeds": list(cluster.speeds), "cases": cases, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stock and HEFT only, short runs")
    parser.add_argument("--slots", type=int, nargs="+", help="worker slots per node")
    parser.add_argument("--target", type=float, help="lower bound per trace, seconds")
    parser.add_argument("--repeats", type=int, help="clusters per configuration")
    parser.add_argument("--rounds", type=int, help="runs of each trace per cluster")
    parser.add_argument("--solver-seconds", type=float, help="CP-SAT time limit per trace")
    parser.add_argument("--configs", nargs="+", choices=sorted(SCHEDULERS))
    parser.add_argument("--child", choices=sorted(SCHEDULERS), help=argparse.SUPPRESS)
    parser.add_argument("--cases", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, json.loads(args.cases.read_text()), args.slots[0], args.rounds)
        return 0

    name = "quick" if args.quick else "full"
    base = MODES[name]
    mode = Mode(args.configs or base.configs, args.slots or base.slots,
                args.repeats or base.repeats, args.rounds or base.rounds,
                args.target or base.target, args.solver_seconds or base.solver_seconds)
    shapes = [run_shape(mode, slots) for slots in mode.slots]
    path = write_result("makespan", {"mode": name, "settings": asdict(mode), "shapes": shapes})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
