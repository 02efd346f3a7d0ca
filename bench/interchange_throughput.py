"""HTEx throughput with node affinity: no-op tasks per second, parsl-perf style.

Three configurations in one run, each in its own interpreter, several repeats:
- stock: the pinned upstream Parsl (unpatched, its own environment under .cache/baseline,
  built by scripts/parsl_suite.py), no affinity;
- fork, unpinned: the fork, no task pinned;
- fork, pinned: the fork, every task pinned round-robin to one of the named pools;
- fork, pinned with estimates: as pinned, each task also carrying ``estimated_cost``,
  ``node_speed`` and ``cost_group``, as adaptive plan execution sends them (issue 16): the
  interchange's work-stealing bookkeeping and its re-pickled results, on the tightest
  loop there is (no idle node ever steals here: every pool has its own work).
Each run starts an HTEx with POOLS worker pools named node0.. (PARSL_NODE_NAME), waits for
them to register, then times ``--batches`` batches of ``--tasks`` no-op tasks. Prints the
median and spread of each and the ratios to stock (issue 3's goal: pinned at least 95% of
stock); writes bench/results/interchange_throughput.json.

    uv run python bench/interchange_throughput.py [--quick] [--tasks 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, stock_python, summary, write_result

POOLS = 4
REGISTRATION_TIMEOUT = 180  # seconds; pools start in a few on a busy 2-core machine
GOAL = 0.95  # issue 3: pinned throughput at least 95% of stock's
MODES = {"quick": (1000, 1, 2), "full": (2000, 3, 3)}  # tasks, interpreters, batches each


SPECS = ("none", "pinned", "estimated")


def task_spec(spec: str, i: int) -> dict[str, object] | None:
    if spec == "none":
        return None
    pin: dict[str, object] = {"node_affinity": f"node{i % POOLS}"}
    if spec == "estimated":
        pin |= {"estimated_cost": 0.001, "node_speed": 1.0, "cost_group": "noop"}
    return pin


def child(tasks: int, spec: str, batches: int) -> None:
    """Run in a fresh interpreter: print the tasks/s of each timed batch."""
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD
    from parsl.providers import LocalProvider

    from parsl_saga.pools import wait_for_pools

    @parsl.python_app
    def noop(parsl_resource_specification=None):
        return None

    # Loopback only: every pool is local, and HTEx's probing of the machine's other
    # addresses can hang a pool on a bridge some other run is tearing down.
    htex = HighThroughputExecutor(
        label="perf", max_workers_per_node=1, encrypted=False, address="127.0.0.1",
        launch_cmd="PARSL_NODE_NAME=node{{block_id}} " + DEFAULT_LAUNCH_CMD,
        provider=LocalProvider(init_blocks=POOLS, min_blocks=POOLS, max_blocks=POOLS))
    with tempfile.TemporaryDirectory() as run_dir, \
            parsl.load(Config(executors=[htex], run_dir=run_dir, strategy="none")):
        wait_for_pools(htex, POOLS, REGISTRATION_TIMEOUT)
        [noop().result() for _ in range(20)]  # warm up every pool's imports
        for _ in range(batches):
            start = time.perf_counter()
            futures = [noop(parsl_resource_specification=task_spec(spec, i))
                       for i in range(tasks)]
            for f in futures:
                f.result()
            print(json.dumps({"tasks_per_s": tasks / (time.perf_counter() - start)}),
                  flush=True)


def measure(python: str, tasks: int, spec: str, batches: int) -> list[float]:
    cmd = [python, __file__, "--child", "--tasks", str(tasks), "--batches", str(batches),
           "--spec", spec]
    # Stock Parsl's environment does not have this project installed; its HTEx starts
    # the interchange and pools as scripts on PATH.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"),
           "PATH": f"{Path(python).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env,
                         timeout=900).stdout
    return [json.loads(line)["tasks_per_s"] for line in out.splitlines()
            if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks, one interpreter each")
    parser.add_argument("--tasks", type=int, help="no-op tasks per batch")
    parser.add_argument("--repeats", type=int, help="interpreters per configuration")
    parser.add_argument("--batches", type=int, help="timed batches per interpreter")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spec", choices=SPECS, default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    tasks, repeats, batches = (given or default for given, default in zip(
        (args.tasks, args.repeats, args.batches), MODES[mode], strict=True))
    if args.child:
        child(tasks, args.spec, batches)
        return

    stock = str(stock_python())
    configs = {"stock": (stock, "none"), "fork unpinned": (sys.executable, "none"),
               "fork pinned": (sys.executable, "pinned"),
               "fork pinned, with estimates": (sys.executable, "estimated")}
    runs: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):  # interleaved, so drift in machine load hits all alike
        for name, (python, spec) in configs.items():
            runs[name] += measure(python, tasks, spec, batches)

    base = statistics.median(runs["stock"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {tasks} no-op tasks on {POOLS} pools, "
          f"{repeats} interpreter(s) x {batches} batches")
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"{name:<28} median {median:7.1f} tasks/s  (min {min(values):.1f}, "
              f"max {max(values):.1f})  ratio to stock {median / base:.2f}")
    pinned_ratio = statistics.median(runs["fork pinned"]) / base
    print(f"goal pinned >= {GOAL:.0%} of stock: {'met' if pinned_ratio >= GOAL else 'NOT met'}")
    path = write_result("interchange_throughput", {
        "mode": mode, "tasks": tasks, "pools": POOLS, "repeats": repeats, "batches": batches,
        "goal": GOAL, "runs": runs, "summary": {k: summary(v) for k, v in runs.items()}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
