"""Adaptive against static plan execution against stock Parsl, in real execution, as the
planner's cost estimates get worse (issue 16).

On the local multi-node cluster (nodes at speeds 1, 1, 2 and 4, ``--slots`` workers each)
every task of the six shared WfCommons traces sleeps for its recorded runtime x scale /
its node's speed; each trace is scaled so that its lower bound is ``--target`` seconds.
Three configurations, each in its own interpreter with its own cluster:

- ``stock``: the pinned upstream Parsl (.cache/baseline); estimates mean nothing to it;
- ``static``: the fork, HEFT, ``Config(plan_execution="static")``: every task on its
  planned node;
- ``adaptive``: the fork, HEFT, ``plan_execution="adaptive"`` (the default): an idle node
  takes ready tasks planned elsewhere when, by the estimates, they finish sooner there.

The fork runs each trace in these rows, every row planned in its own ``planned()`` block:

- ``exact``: each task's cost hint is its true cost;
- ``sigma0.3``, ``sigma0.6``, ``sigma1.0``: the true cost times a log-normal error of that
  spread, seeded by trace, row and round, so static and adaptive get the same hints;
- ``none``: no hints, one app per program as the trace names it, no history: every task
  is estimated at the default 1.0;
- ``second``: the same apps again, planned from the history the ``none`` run recorded.

``--loss`` adds, in the adaptive cluster, a run per trace with exact hints in which the
pool of the fastest node is SIGKILLed ``--kill-at`` seconds after the plan's launch
(soft policy, default heartbeat and grace period); it reports when the interchange moved
that node's tasks and when the last of them started elsewhere, and the makespan against
the same round's undisturbed ``exact`` run. The node's pool is started again before the
next trace.

The three clusters run at the same time (``--parallel``, the default here: the whole
step would take three times as long otherwise), so each is measured under the others'
load; the stock cluster repeats its rounds for as long as the fork's clusters run, so it
sees the same load throughout, and it has more repeats. Rounds within a cluster are the
repeats; the report gives the median and the range of each.

    uv run python bench/adaptive.py [--quick] [--target 15] [--rounds 3] [--no-parallel]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

from common import SPEEDS, Cluster, write_result
from makespan import make_cases, run_child

from parsl_saga.traces import dependency_order, read_programs, read_trace, scaled, submit_graph

CONFIGS = ("stock", "static", "adaptive")
SIGMAS = {"exact": 0.0, "sigma0.3": 0.3, "sigma0.6": 0.6, "sigma1.0": 1.0}
ROWS = (*SIGMAS, "none", "second")
LOST_NODE = "node-d"  # the fastest: the most planned work is lost with it
WARM_UP_SECONDS = 0.3


# -- in a child: one configuration on its own cluster -----------------------------------

def task_body(seconds: float, *parents: Any,
              parsl_resource_specification: dict[str, Any] | None = None) -> tuple[str, float]:
    """Do *seconds* of reference-speed work on this node; return the node and the start
    time (seconds since the epoch), which the node-loss row needs."""
    import os
    import time

    from parsl_saga.local_cluster import work

    started = time.time()
    work(seconds)
    return os.environ["PARSL_NODE_NAME"], started


def named_app(name: str) -> Any:
    """A python_app running task_body under the function name *name*: Parsl keys cost
    history by app name. Made at run time in the child's __main__, so it is serialized
    by value, like any function defined in a script."""
    import parsl

    function = types.FunctionType(task_body.__code__, task_body.__globals__, name,
                                  task_body.__defaults__)
    function.__qualname__ = name
    function.__kwdefaults__ = task_body.__kwdefaults__
    return parsl.python_app(function)


def noisy_costs(case: dict[str, Any], graph: dict[str, tuple[float, list[str]]], row: str,
                round_: int) -> dict[str, float]:
    """Each task's cost hint: its true cost times exp(N(0, sigma)), seeded."""
    sigma = SIGMAS[row]
    rng = random.Random(f"{case['trace']}/{row}/{round_}")
    return {name: graph[name][0] * math.exp(rng.gauss(0.0, sigma)) if sigma else graph[name][0]
            for name in dependency_order(graph)}


class Child:
    def __init__(self, config: str, slots: int) -> None:
        import parsl
        from parsl.config import Config

        from parsl_saga.local_cluster import ClusterNode, cluster_executor

        self.config = config
        self.slots = slots
        cluster = Cluster(SPEEDS, slots)
        nodes = [ClusterNode(name, workers=slots, speed=speed)
                 for name, speed in zip(cluster.node_names, cluster.speeds, strict=True)]
        self.nodes = nodes
        self.executor = cluster_executor("cluster", nodes)
        self.run_dir = tempfile.TemporaryDirectory(prefix="parsl-saga-bench-adaptive-")
        planning: dict[str, Any] = {}
        if config != "stock":
            from parsl.dataflow.planning import CostModel  # the fork's: not in stock Parsl

            planning = {"dag_scheduler": "heft", "plan_execution": config,
                        "cost_model": CostModel(history_file=f"{self.run_dir.name}/history.json")}
        self.dfk = parsl.load(Config(executors=[self.executor], run_dir=self.run_dir.name,
                                     strategy="none", **planning))
        self.default_app = named_app("bench_task")

    def start(self) -> None:
        from parsl_saga.pools import wait_for_pools

        wait_for_pools(self.executor, len(self.nodes))
        if self.config != "stock":
            self.dfk.execute()  # nothing deferred: from now on only planned() blocks defer
        self.warm_up()

    def warm_up(self) -> None:
        """A task on every worker first, so no timed task pays a worker's imports."""
        for _ in range(2):
            futures = [self.default_app(WARM_UP_SECONDS) for _ in range(self.slots * len(SPEEDS))]
            [f.result() for f in futures]

    def close(self) -> None:
        self.dfk.cleanup()
        self.run_dir.cleanup()

    def run(self, case: dict[str, Any], row: str, round_: int,
            kill_at: float | None = None) -> dict[str, Any]:
        path = Path(case["path"])
        graph = scaled(read_trace(path), case["scale"])
        if row in ("none", "second"):
            programs = read_programs(path)
            apps = {p: named_app(f"{case['trace']}_{p}_r{round_}".replace("-", "_"))
                    for p in set(programs.values())}

            def one(cost: float, parents: list[Any], name: str) -> Any:
                return apps[programs[name]](cost, *parents)
        else:
            hints = noisy_costs(case, graph, row, round_) if self.config != "stock" else {}

            def one(cost: float, parents: list[Any], name: str) -> Any:
                spec = {"parsl_resource_specification": {"cost": hints[name]}} if hints else {}
                return self.default_app(cost, *parents, **spec)

        names = iter(list(dependency_order(graph)))  # submit_graph visits in this order
        start = time.perf_counter()
        if self.config == "stock":
            futures = submit_graph(graph, lambda c, p: one(c, p, next(names)))
        else:
            with self.dfk.planned():
                futures = submit_graph(graph, lambda c, p: one(c, p, next(names)))
        killed = self.kill_later(kill_at) if kill_at is not None else None
        ran = {name: f.result() for name, f in futures.items()}
        result: dict[str, Any] = {"config": self.config, "trace": case["trace"], "row": row,
                                  "round": round_, "makespan": time.perf_counter() - start,
                                  "tasks_per_node": dict(Counter(n for n, _ in ran.values()))}
        if self.config != "stock":
            result |= plan_figures(self.dfk.plan)
        if killed is not None:
            killed.join()
            result |= loss_figures(self.dfk.plan, futures, ran, killed.kill_time)
            self.restart_lost_node()
        return result

    def kill_later(self, delay: float) -> Any:
        """Kill LOST_NODE's pool *delay* seconds after the plan's launch, in a thread."""
        launched = self.dfk.plan.launched_at.timestamp()
        provider = self.executor.provider

        def kill() -> None:
            time.sleep(max(0.0, launched + delay - time.time()))
            killer.kill_time = time.time()
            provider.kill_node(LOST_NODE)

        killer = threading.Thread(target=kill, name="bench-kill-node")
        killer.kill_time = None  # type: ignore[attr-defined]
        killer.start()
        return killer

    def restart_lost_node(self) -> None:
        from parsl_saga.pools import wait_for_pools

        self.executor.scale_out_facade(1)
        wait_for_pools(self.executor, [n.name for n in self.nodes])
        self.warm_up()


def plan_figures(plan: Any) -> dict[str, Any]:
    moves = Counter(m["reason"] for t in plan.tasks.values() for m in t.moves)
    return {"planned": plan.makespan, "actual_from_launch": plan.actual_makespan,
            "moved": len(plan.moved), "moves": dict(moves),
            "cost_sources": dict(Counter(t.cost_source for t in plan.tasks.values()))}


def loss_figures(plan: Any, futures: dict[str, Any], ran: dict[str, tuple[str, float]],
                 kill_time: float) -> dict[str, Any]:
    """When the tasks pinned to the lost node that were queued or running there at the
    kill moved (the interchange's records) and started elsewhere (the tasks' own clocks)."""
    launched = plan.launched_at.timestamp()
    at_loss = {}
    for name, f in futures.items():
        t = plan.tasks[f.tid]
        lost = [m for m in t.moves if m["reason"] in ("node lost", "rerun")]
        if t.node == LOST_NODE and lost:
            at_loss[name] = lost[0]["time"] + launched
    started = [ran[name][1] for name in at_loss]
    return {"kill_s": kill_time - launched,
            "moved_at_loss": len(at_loss),
            "detect_s": (min(at_loss.values()) - kill_time) if at_loss else None,
            "all_started_s": (max(started) - kill_time) if started else None,
            "ran_on_lost_node_after_kill": sum(1 for n, s in ran.values()
                                               if n == LOST_NODE and s > kill_time)}


def child_main(config: str, cases: list[dict[str, Any]], slots: int, rounds: int,
               stop_file: Path | None, kill_at: float | None) -> None:
    child = Child(config, slots)
    try:
        child.start()
        round_ = 0
        while round_ < rounds or (stop_file is not None and not stop_file.exists()):
            for case in cases:
                for row in (["stock"] if config == "stock" else ROWS):
                    emit(child.run(case, row, round_))
                if kill_at is not None and round_ == 0:
                    emit(child.run(case, "exact", round_, kill_at=kill_at) | {"row": "loss"})
            round_ += 1
    finally:
        child.close()


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


# -- in the parent ----------------------------------------------------------------------

def run_all(cases: list[dict[str, Any]], slots: int, rounds: int, parallel: bool,
            kill_at: float | None) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-adaptive-") as tmp:
        stop_file = Path(tmp) / "fork-clusters-done"

        def args(config: str) -> list[str]:
            extra = ["--slots", str(slots), "--rounds", str(rounds)]
            if config == "stock" and parallel:
                extra += ["--stop-file", str(stop_file)]
            if config == "adaptive" and kill_at is not None:
                extra += ["--kill-at", str(kill_at)]
            return extra

        def run(config: str) -> None:
            started = time.perf_counter()
            runs[config] = run_child(__file__, config, cases, args(config), timeout_s=4 * 3600)
            print(f"  {config}: {len(runs[config])} runs in {time.perf_counter() - started:.0f} s",
                  flush=True)

        if not parallel:
            for config in CONFIGS:
                run(config)
            return runs
        threads = {c: threading.Thread(target=run, args=(c,)) for c in CONFIGS}
        for thread in threads.values():
            thread.start()
        for config in ("static", "adaptive"):
            threads[config].join()
        stop_file.touch()
        threads["stock"].join()
    missing = [c for c in CONFIGS if c not in runs]
    if missing:
        raise RuntimeError(f"configurations {missing} failed; see the errors above")
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two traces, short, one round")
    parser.add_argument("--slots", type=int, default=2, help="worker slots per node")
    parser.add_argument("--target", type=float, help="lower bound per trace, seconds")
    parser.add_argument("--rounds", type=int, help="runs of each trace and row per cluster")
    parser.add_argument("--kill-at", type=float,
                        help="node-loss row: seconds after launch to kill the node (default 3, "
                             "at most a third of the target)")
    parser.add_argument("--no-loss", action="store_true", help="skip the node-loss row")
    parser.add_argument("--no-parallel", action="store_true",
                        help="run the three clusters one after another")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--cases", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, json.loads(args.cases.read_text()), args.slots,
                   args.rounds, args.stop_file, args.kill_at)
        return 0

    target = args.target or (3.0 if args.quick else 15.0)
    rounds = args.rounds or (1 if args.quick else 3)
    cluster = Cluster(SPEEDS, args.slots)
    cases = make_cases(target, cluster)
    if args.quick:
        cases = cases[:2]
    kill_at = None if args.no_loss else min(args.kill_at or 3.0, target / 3)
    print(f"{cluster.describe()}; {len(cases)} traces, lower bound {target:g} s, "
          f"{rounds} round(s)", flush=True)
    runs = run_all(cases, args.slots, rounds, not args.no_parallel, kill_at)
    path = write_result("adaptive", {
        "mode": "quick" if args.quick else "full",
        "settings": {"slots": args.slots, "speeds": list(SPEEDS), "target": target,
                     "rounds": rounds, "kill_at": kill_at, "lost_node": LOST_NODE,
                     "parallel": not args.no_parallel},
        "cases": cases, "runs": runs})
    print(f"wrote {path}")
    print(summary(runs, cases))
    return 0


def summary(runs: dict[str, list[dict[str, Any]]], cases: list[dict[str, Any]]) -> str:
    """Geometric mean over traces of stock's median makespan over each mode's, per row."""
    def median(config: str, row: str, trace: str) -> float:
        return statistics.median(r["makespan"] for r in runs[config]
                                 if r["trace"] == trace and r["row"] == row)

    lines = [f"{'row':<10} {'static/stock':>13} {'adaptive/stock':>15} {'adaptive/static':>16}"]
    traces = [c["trace"] for c in cases]
    for row in ROWS:
        ratios = {mode: geomean([median("stock", "stock", t) / median(mode, row, t)
                                 for t in traces]) for mode in ("static", "adaptive")}
        lines.append(f"{row:<10} {ratios['static']:>12.2f}x {ratios['adaptive']:>14.2f}x "
                     f"{ratios['adaptive'] / ratios['static']:>15.3f}x")
    return "\n".join(lines)


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


if __name__ == "__main__":
    sys.exit(main())
