"""Plan a workflow with the fork's DAG scheduler on the local multi-node cluster, run it,
and check where every task ran against the plan.

    uv run python scripts/plan_workflow.py                       # the diamond DAG
    uv run python scripts/plan_workflow.py --scale 0.01 \
        --trace ../shared/workflows/epigenomics-chameleon-hep-1seq-100k-001.json

Each task sleeps for its runtime x scale / its node's speed (PARSL_NODE_SPEED) and tells
the planner its cost (runtime x scale at speed 1) through the `cost` hint. The script
prints the plan, planned and actual makespan and where each task ran, and writes
plan.json and gantt.png to --out. With ``--execution static`` every task must run on its
planned node; with ``adaptive`` (the default) an idle node may take tasks planned
elsewhere, and every task that ran off its planned node must be recorded in the plan as
moved, on the node it ran on. It exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import parsl
from parsl.config import Config
from parsl.dataflow.futures import AppFuture

from parsl_saga.apps import sleep_task
from parsl_saga.gantt import plot_plan
from parsl_saga.local_cluster import ClusterNode, cluster_executor
from parsl_saga.pools import wait_for_pools
from parsl_saga.traces import Graph, read_trace, scaled, submit_graph

NODES = [ClusterNode("node-a", speed=1.0), ClusterNode("node-b", speed=1.0),
         ClusterNode("node-c", speed=2.0), ClusterNode("node-d", speed=4.0)]
DIAMOND = {"t1": (0.5, []), "t2": (2.0, ["t1"]), "t3": (1.0, ["t1"]), "t4": (0.5, ["t2", "t3"])}


def submit(graph: Graph, scale: float) -> dict[str, AppFuture]:
    """Submit in dependency order; each task's cost hint is its scaled runtime."""
    def one(seconds: float, parents: list[AppFuture]) -> AppFuture:
        return sleep_task(seconds, *parents, parsl_resource_specification={"cost": seconds})

    return submit_graph(scaled(graph, scale), one)


def warm_up(dfk) -> None:
    """Run a no-op on every node first: a pool imports the task's modules on its first
    task, which would otherwise count in the plan's measured makespan."""
    with dfk.planned():
        pinned = [sleep_task(0.0, parsl_resource_specification={"node_affinity": n.name})
                  for n in NODES]
    assert [f.result() for f in pinned] == [n.name for n in NODES]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, help="a WfCommons trace (default: the diamond)")
    parser.add_argument("--scale", type=float, default=1.0, help="runtime multiplier")
    parser.add_argument("--scheduler", default="heft", help="heft, cpop or any SAGA scheduler")
    parser.add_argument("--execution", choices=["adaptive", "static"], default="adaptive",
                        help="Config(plan_execution=...): may the run move tasks off plan")
    parser.add_argument("--out", type=Path, default=Path("out/plan_workflow"))
    args = parser.parse_args()

    graph = read_trace(args.trace) if args.trace else DIAMOND
    executor = cluster_executor("cluster", NODES, max_workers_per_node=1)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="parsl-saga-plan-") as run_dir, \
            parsl.load(Config(executors=[executor], run_dir=run_dir, strategy="none",
                              dag_scheduler=args.scheduler,
                              plan_execution=args.execution)) as dfk:
        wait_for_pools(executor, len(NODES))
        warm_up(dfk)
        with dfk.planned():
            futures = submit(graph, args.scale)
        plan = dfk.plan
        ran_on = {name: f.result() for name, f in futures.items()}

    print(plan.summary())
    tasks = {name: plan.tasks[f.tid] for name, f in futures.items()}
    off_plan = {name for name, node in ran_on.items() if node != tasks[name].node}
    wrong = {name for name, node in ran_on.items()
             if node != tasks[name].actual_node or (name in off_plan) != bool(tasks[name].moves)
             or (off_plan and args.execution == "static")}
    for name in sorted(wrong):
        t = tasks[name]
        print(f"WRONG: {name} ran on {ran_on[name]}, planned for {t.node}; the plan records "
              f"{t.actual_node} and moves {t.moves}")
    print(f"{len(ran_on) - len(off_plan)} of {len(ran_on)} tasks ran on their planned node, "
          f"{len(off_plan)} moved ({args.execution} execution); "
          f"{len(set(ran_on.values()))} distinct nodes; "
          f"the plan records {'every' if not wrong else 'NOT every'} task's node and moves")
    plan.write_json(str(args.out / "plan.json"))
    plot_plan(plan, args.out / "gantt.png")
    print(f"wrote {args.out / 'plan.json'} and {args.out / 'gantt.png'}")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
