"""Makespan of a shared trace on a real Slurm cluster: stock Parsl against the fork's plan.

One :class:`parsl_saga.slurm_cluster.SlurmCluster` (slurmctld, one slurmd per node in its
own network namespace; nodes at speeds 1, 1, 2 and 4, ``--slots`` CPUs each, the speed a
node feature ``speed_X`` and ``PARSL_NODE_SPEED`` in every job) serves the whole step. Each
run is a fresh interpreter and DFK whose HighThroughputExecutor gets its pools from
Parsl's own ``SlurmProvider``, the same settings in both configurations: the cluster's
partition, one exclusive node per block, as many blocks as nodes, ``worker_init``
exporting ``PARSL_NODE_NAME=$SLURMD_NODENAME``. Runs alternate between

- ``stock``: the pinned upstream Parsl, unpatched (.cache/baseline, as bench/makespan.py),
  HTEx handing each ready task to a random pool with a free worker;
- ``fork-heft``: the fork with ``Config(dag_scheduler="heft")``, the trace submitted in
  ``with dfk.planned():`` with each task's exact cost as its ``cost`` hint; the plan is
  made on the nodes ``SlurmProvider.get_graph_nodes()`` reads from ``sinfo`` (names and
  speed features).

Timing starts once every block's pool has registered (block start-up is recorded apart)
and a warm-up task has run on every worker; the makespan is bench/makespan.py's (first
submit to last result, deferred submission and planning included). Every task returns the
node it ran on (``PARSL_NODE_NAME``), so planned runs record how many tasks ran off plan.
Between runs the step waits until every node is idle again.

Where no cluster can run (not root, Slurm not installed) it writes a result that says it
was skipped and why. Writes bench/results/slurm_makespan.json.

    uv run python bench/slurm_makespan.py [--quick] [--trace epigenomics] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import SPEEDS, Cluster, traces, write_result
from makespan import make_case, run_case, run_child, trace_name, warm_up

from parsl_saga.slurm_cluster import ClusterNode, SlurmCluster, slurm_unavailable_reason

CONFIGS = ("stock", "fork-heft")
SCHEDULERS = {"stock": None, "fork-heft": "heft"}
NAME = "slurm_makespan"


@dataclass(frozen=True)
class Mode:
    trace: str  # workflow family of the shared trace (bench/common.py traces())
    slots: int  # workers (Slurm CPUs) per node
    repeats: int  # runs per configuration
    target: float  # the trace's lower bound on this cluster, seconds


# epigenomics: the smallest shared trace (41 tasks). At a 15 s bound a run's makespan is
# 20-45 s here; the full step (5 runs each) takes about 10 minutes, quick mode about 3.
MODES = {"quick": Mode("epigenomics", 2, 2, 3.0), "full": Mode("epigenomics", 2, 5, 15.0)}
POOL_TIMEOUT_S = 300.0
IDLE_TIMEOUT_S = 120.0


# -- in the child: one run, one DFK, blocks from SlurmProvider ---------------------------------

def child(config: str, case: dict[str, Any], address: str, partition: str, nodes: int,
          slots: int) -> None:
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import SlurmProvider

    from parsl_saga.pools import wait_for_pools

    provider = SlurmProvider(
        partition=partition, nodes_per_block=1, init_blocks=nodes, min_blocks=nodes,
        max_blocks=nodes, walltime="00:30:00",
        worker_init="export PARSL_NODE_NAME=$SLURMD_NODENAME")
    executor = HighThroughputExecutor(label="slurm", address=address, provider=provider,
                                      max_workers_per_node=slots)
    scheduler = SCHEDULERS[config]
    planning = {"dag_scheduler": scheduler} if scheduler else {}
    with tempfile.TemporaryDirectory(prefix="parsl-saga-bench-slurm-") as run_dir:
        loaded = time.perf_counter()
        with parsl.load(Config(executors=[executor], run_dir=run_dir, strategy="none",
                               **planning)) as dfk:
            wait_for_pools(executor, nodes, POOL_TIMEOUT_S)
            startup = time.perf_counter() - loaded
            if scheduler:
                dfk.execute()  # nothing deferred yet: from now on only planned() defers
            warm_up(slots)
            result = run_case(dfk, case, planned=scheduler is not None)
            result["startup_s"] = startup
            result["jobs"] = sorted(executor.blocks_to_job_id.values())
            if scheduler:
                result["plan_nodes"] = {t.node: t.speed for t in dfk.plan.tasks.values()}
            finished = time.perf_counter()
        # Leaving the with block shuts the executor down and scancels its blocks.
        result["shutdown_s"] = time.perf_counter() - finished
    print(json.dumps(result), flush=True)


# -- in the parent ------------------------------------------------------------------------

def alternating(configs: tuple[str, ...], repeats: int) -> list[str]:
    """Every configuration *repeats* times, taking turns: a, b, a, b, ..."""
    return [config for _ in range(repeats) for config in configs]


def settle(cluster: SlurmCluster, timeout_s: float = IDLE_TIMEOUT_S) -> None:
    """Cancel any job a run left behind and wait until every node is idle again, so that
    the next run's blocks start at once."""
    cluster.run("scancel", f"--partition={cluster.partition}", check=False)
    deadline = time.monotonic() + timeout_s
    while set((states := cluster.node_states()).values()) != {"idle"}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes not idle after {timeout_s:.0f} s: {states}")
        time.sleep(0.5)


def find_trace(name: str) -> Path:
    found = [p for p in traces() if trace_name(p) == name]
    if not found:
        raise SystemExit(f"no shared trace {name!r}; there are "
                         f"{', '.join(trace_name(p) for p in traces())}")
    return found[0]


def measure(mode: Mode) -> dict[str, Any]:
    shape = Cluster(SPEEDS, mode.slots)
    case = make_case(find_trace(mode.trace), mode.target, shape)
    nodes = [ClusterNode(name, workers=mode.slots, speed=speed)
             for name, speed in zip(shape.node_names, shape.speeds, strict=True)]
    runs: list[dict[str, Any]] = []
    print(f"{mode.trace} ({case['tasks']} tasks, lower bound {case['lower_bound']:.2f} s) on "
          f"Slurm, {shape.describe()}", flush=True)
    with SlurmCluster(nodes) as cluster:
        args = ["--address", cluster.bridge_address, "--partition", cluster.partition,
                "--nodes", str(len(nodes)), "--slots", str(mode.slots)]
        order = alternating(CONFIGS, mode.repeats)
        for index, config in enumerate(order):
            started = time.perf_counter()
            settle(cluster)
            settled = time.perf_counter()
            [result] = run_child(__file__, config, [case], args, env=cluster.env,
                                 timeout_s=POOL_TIMEOUT_S + 600)
            runs.append({"config": config, "order": index, **result})
            off = f", {result['off_plan']} off plan" if "off_plan" in result else ""
            print(f"  {index + 1}/{len(order)} {config}: makespan {result['makespan']:.2f} s"
                  f"{off} (nodes idle after {settled - started:.0f} s, blocks up in "
                  f"{result['startup_s']:.1f} s, {time.perf_counter() - started:.0f} s in all)",
                  flush=True)
        settle(cluster)
    return {"case": case, "nodes": [asdict(n) for n in nodes], "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 2 per configuration")
    parser.add_argument("--trace", help="workflow family of the shared trace")
    parser.add_argument("--slots", type=int, help="workers per node")
    parser.add_argument("--repeats", type=int, help="runs per configuration")
    parser.add_argument("--target", type=float, help="the trace's lower bound, seconds")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--cases", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--partition", help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        [case] = json.loads(args.cases.read_text())
        child(args.child, case, args.address, args.partition, args.nodes, args.slots)
        return 0

    name = "quick" if args.quick else "full"
    base = MODES[name]
    mode = Mode(args.trace or base.trace, args.slots or base.slots,
                args.repeats or base.repeats, args.target or base.target)
    result: dict[str, Any] = {"mode": name, "settings": asdict(mode),
                              "configs": list(CONFIGS)}
    reason = slurm_unavailable_reason()
    if reason is not None:
        result["skipped"] = reason
        print(f"skipped: {reason}")
    else:
        result["started"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        result |= measure(mode)
    print(f"wrote {write_result(NAME, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
