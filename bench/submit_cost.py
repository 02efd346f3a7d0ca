"""DFK submit cost per task, planned against unplanned, on a real HTEx.

One interpreter, one HTEx with one local pool (so both modes serialize and send alike),
``--repeats`` rounds; each round times both modes, in alternating order, on ``--tasks``
no-op tasks. A mode's time is from the first submit until every task has been handed to
the executor (left the pending state): for the planned mode that includes building the
graph, planning with the native HEFT and setting each task's node and priority. Running
the tasks is not timed; the round waits for them before the next measurement.

Prints the median and spread of microseconds per task for each mode and the ratio of the
medians (planned / unplanned); writes bench/results/submit_cost.json.

    uv run python bench/submit_cost.py [--quick] [--tasks 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import parsl
from common import summary, write_result
from parsl.config import Config
from parsl.dataflow.planning import CostModel
from parsl.dataflow.states import States
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

MODES = {"quick": (500, 3), "full": (2000, 5)}  # tasks, repeats
REGISTRATION_TIMEOUT = 180.0
POLL_S = 0.001


@parsl.python_app
def noop(parsl_resource_specification=None):
    return None


def all_launched(futures: list) -> bool:
    return all(f.task_record["status"] != States.pending for f in futures)


def time_submits(dfk: parsl.DataFlowKernel, tasks: int, planned: bool) -> float:
    """Seconds from the first submit until every task reached the executor."""
    started = time.perf_counter()
    if planned:
        with dfk.planned():
            futures = [noop() for _ in range(tasks)]
    else:
        futures = [noop() for _ in range(tasks)]
    while not all_launched(futures):
        time.sleep(POLL_S)
    seconds = time.perf_counter() - started
    for f in futures:
        f.result(timeout=600)
    return seconds


def wait_for_pool(htex: HighThroughputExecutor) -> None:
    deadline = time.monotonic() + REGISTRATION_TIMEOUT
    while not htex.connected_managers():
        if time.monotonic() > deadline:
            raise SystemExit(f"no worker pool registered within {REGISTRATION_TIMEOUT:.0f} s")
        time.sleep(0.2)


def measure(tasks: int, repeats: int) -> dict[str, list[float]]:
    htex = HighThroughputExecutor(
        label="htex", max_workers_per_node=1, encrypted=False, address="127.0.0.1",
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))
    per_task: dict[str, list[float]] = {"unplanned": [], "planned": []}
    with tempfile.TemporaryDirectory() as run_dir:
        config = Config(executors=[htex], run_dir=run_dir, strategy="none",
                        dag_scheduler="heft", cost_model=CostModel(history=False))
        with parsl.load(config) as dfk:
            dfk.execute()  # leave the initial deferred phase: unplanned tasks launch at once
            wait_for_pool(htex)
            for planned in (False, True):  # warm-up: imports, serializer cache, connections
                time_submits(dfk, min(tasks, 100), planned)
            for round_no in range(repeats):
                order = (False, True) if round_no % 2 == 0 else (True, False)
                for planned in order:
                    seconds = time_submits(dfk, tasks, planned)
                    per_task["planned" if planned else "unplanned"].append(seconds / tasks * 1e6)
    return per_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--repeats", type=int)
    args = parser.parse_args()
    tasks, repeats = MODES["quick" if args.quick else "full"]
    tasks = args.tasks or tasks
    repeats = args.repeats or repeats
    per_task = measure(tasks, repeats)
    stats = {mode: summary(values) for mode, values in per_task.items()}
    ratio = stats["planned"]["median"] / stats["unplanned"]["median"]
    for mode, s in stats.items():
        print(f"{mode:>9}: {s['median']:.0f} us/task (range {s['min']:.0f}-{s['max']:.0f}, "
              f"n={s['n']})")
    print(f"planned / unplanned: {ratio:.2f}x")
    write_result("submit_cost", {"tasks": tasks, "repeats": repeats,
                                 "us_per_task": per_task, "stats": stats, "ratio": ratio})


if __name__ == "__main__":
    main()
