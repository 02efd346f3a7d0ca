"""A workflow pinned by hand: each step names its node, is submitted with the resource
specification key ``node_affinity``, and reports the node it ran on.

What scripts/test_multinode.py (the local multi-node cluster), scripts/test.py (a
Kubernetes cluster) and scripts/test_local.py (one local pool) share: the steps, their
submission and the report of where each ran.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from parsl_saga.apps import sleep_task

AFFINITY_KEY = "node_affinity"


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    node: str
    after: tuple[str, ...] = ()


def diamond_and_fanout(diamond: Sequence[str], spread: Sequence[str], fanout: int
                       ) -> list[Step]:
    """t1 (0.5 s) -> t2 (2.0 s), t3 (1.0 s) -> t4 (0.5 s), then *fanout* 0.25 s tasks.

    t1 to t4 run on the four nodes of *diamond*; the fan-out goes round-robin over
    *spread*. Parents come before children.
    """
    t1, t2, t3, t4 = diamond
    steps = [Step("t1", 0.5, t1), Step("t2", 2.0, t2, ("t1",)),
             Step("t3", 1.0, t3, ("t1",)), Step("t4", 0.5, t4, ("t2", "t3"))]
    return steps + [Step(f"f{i}", 0.25, spread[i % len(spread)]) for i in range(fanout)]


def run_steps(steps: list[Step], pinned: bool = True) -> dict[str, str]:
    """Submit every step (pinned to its node, or not), wait; the node each ran on."""
    started = time.monotonic()
    futures: dict[str, Future[str]] = {}
    for step in steps:
        spec = {AFFINITY_KEY: step.node} if pinned else {}
        futures[step.name] = sleep_task(step.seconds, *(futures[a] for a in step.after),
                                        parsl_resource_specification=spec)
    ran = {name: f.result() for name, f in futures.items()}
    print(f"ran {len(steps)} tasks in {time.monotonic() - started:.1f}s")
    return ran


def report(steps: list[Step], ran: dict[str, str], pinned: bool = True) -> int:
    """Print where each step ran; return 1 if a pinned step ran off its node, else 0."""
    width = max(len(s.node) for s in steps) + 2
    print(f"{'task':<5} {'planned':<{width}} {'ran on':<{width}}")
    wrong = 0
    for step in steps:
        ok = ran[step.name] == step.node
        wrong += pinned and not ok
        mark = "" if ok or not pinned else "  <-- WRONG NODE"
        print(f"{step.name:<5} {step.node:<{width}} {ran[step.name]:<{width}}{mark}")
    used = sorted(set(ran.values()))
    print(f"distinct nodes used: {len(used)} ({', '.join(used)})")
    if not pinned:
        return 0  # without pins, the planned node is only what the plan said
    if wrong:
        print(f"FAIL: {wrong} task(s) ran off their planned node")
        return 1
    print("OK: every task ran on its planned node")
    return 0
