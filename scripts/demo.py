"""`make demo`: a small diamond workflow on the fork's HighThroughputExecutor.

Two local worker pools run a diamond DAG (t1 -> t2, t3 -> t4); each task reports the
pool and process it ran in, and the script checks the results and the dependency order.
"""

from __future__ import annotations

import os
import tempfile
import time

import parsl
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider


@parsl.python_app
def stage(name: str, seconds: float, *upstream: dict[str, object]) -> dict[str, object]:
    import os
    import socket
    import time

    started = time.time()
    time.sleep(seconds)
    return {"task": name, "host": socket.gethostname(), "pid": os.getpid(),
            "block": os.environ.get("PARSL_WORKER_BLOCK_ID"), "start": started,
            "end": time.time(), "after": [u["task"] for u in upstream]}


def config(run_dir: str) -> Config:
    return Config(
        executors=[HighThroughputExecutor(
            label="htex_local", max_workers_per_node=2,
            provider=LocalProvider(init_blocks=2, min_blocks=2, max_blocks=2),
        )],
        run_dir=run_dir,
        strategy="none",
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="parsl-saga-demo-") as run_dir, \
            parsl.load(config(run_dir)):
        started = time.time()
        t1 = stage("t1", 0.5)
        t2 = stage("t2", 2.0, t1)
        t3 = stage("t3", 1.0, t1)
        t4 = stage("t4", 0.5, t2, t3)
        records = {r["task"]: r for r in (f.result() for f in (t1, t2, t3, t4))}
        wall = time.time() - started

    print(f"{'task':<5} {'block':<6} {'pid':<8} {'start':>7} {'end':>7}  after")
    for name, r in records.items():
        print(f"{name:<5} {r['block']!s:<6} {r['pid']!s:<8} {r['start'] - started:7.2f} "
              f"{r['end'] - started:7.2f}  {', '.join(r['after']) or '-'}")
    for name, r in records.items():
        for parent in r["after"]:
            assert records[parent]["end"] <= r["start"], f"{name} started before {parent} ended"
    print(f"diamond DAG done in {wall:.2f} s on {len({r['block'] for r in records.values()})} "
          f"worker pool(s) of host {os.uname().nodename}")


if __name__ == "__main__":
    main()
