"""The test_multinode.py workflow on a single local pool, where pins cannot be honoured.

A ThreadPoolExecutor is one pool on one machine: it cannot send a task to a named node,
so a task pinned with ``node_affinity`` must be refused with a clear error, never run
somewhere else in silence. This script submits the pinned workflow, reports that refusal
and exits 1. With ``--unpinned`` it runs the same DAG without pins and exits 0, to show the
workflow itself is fine.

    .venv/bin/python scripts/test_local.py [--unpinned]
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import parsl
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor
from parsl.executors.errors import InvalidResourceSpecification

from parsl_saga.pinned import AFFINITY_KEY, diamond_and_fanout, report, run_steps

# test_multinode.py's cluster and workflow, by name: here every node is this one pool.
NODES = ["node-a", "node-b", "node-c"]
FANOUT = 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unpinned", action="store_true",
                        help="run the DAG without node pins instead")
    args = parser.parse_args()
    pinned = not args.unpinned

    steps = diamond_and_fanout([NODES[i] for i in (0, 1, 2, 0)], NODES, FANOUT)
    executor = ThreadPoolExecutor(label="local", max_threads=4)
    with tempfile.TemporaryDirectory(prefix="parsl-saga-local-") as run_dir, \
            parsl.load(Config(executors=[executor], run_dir=run_dir)):
        try:
            ran = run_steps(steps, pinned=pinned)
        except InvalidResourceSpecification as err:
            # The refusal this script shows; any other error is a failure and propagates.
            if AFFINITY_KEY not in err.invalid_keys:
                raise
            print(f"NOT HONOURED: ThreadPoolExecutor cannot pin tasks to nodes, so the pinned "
                  f"workflow was refused ({AFFINITY_KEY}).\n  {type(err).__name__}: {err}\n"
                  "Run scripts/test_multinode.py for a cluster that honours pins, or pass "
                  "--unpinned to run this DAG unpinned on the local pool.")
            return 1
    return report(steps, ran, pinned=False)


if __name__ == "__main__":
    sys.exit(main())
