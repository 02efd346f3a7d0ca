"""The test_multinode.py workflow on a single local pool, where pins cannot be honoured.

A ThreadPoolExecutor is one pool on one machine: it cannot send a task to a named node,
so a task pinned with ``_saga_node_affinity`` must be refused with a clear error, never run
somewhere else in silence. This script submits the pinned workflow, reports that refusal
and exits 1. With ``--unpinned`` it runs the same DAG without pins and exits 0, to show the
workflow itself is fine.

    .venv/bin/python scripts/test_local.py [--unpinned]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import parsl
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

# The workflow is test_multinode.py's; a script's directory is not on sys.path under -P.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_multinode import AFFINITY_KEY, NODES, report, submit, workflow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unpinned", action="store_true",
                        help="run the DAG without node pins instead")
    args = parser.parse_args()
    pinned = not args.unpinned

    steps = workflow([n.name for n in NODES])
    executor = ThreadPoolExecutor(label="local", max_threads=4)
    with tempfile.TemporaryDirectory(prefix="parsl-saga-local-") as run_dir, \
            parsl.load(Config(executors=[executor], run_dir=run_dir)):
        started = time.monotonic()
        try:
            futures = submit(steps, pinned=pinned)
            ran = {name: f.result() for name, f in futures.items()}
        except Exception as err:  # Parsl surfaces the executor's refusal on the future
            if not pinned:
                raise
            print(f"NOT HONOURED: ThreadPoolExecutor cannot pin tasks to nodes, so the pinned "
                  f"workflow was refused ({AFFINITY_KEY}).\n  {type(err).__name__}: {err}\n"
                  "Run scripts/test_multinode.py for a cluster that honours pins, or pass "
                  "--unpinned to run this DAG unpinned on the local pool.")
            return 1
        print(f"ran {len(steps)} tasks in {time.monotonic() - started:.1f}s")
    # Without pins the planned node is only what the plan said; everything ran here.
    report(steps, ran, pinned=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
