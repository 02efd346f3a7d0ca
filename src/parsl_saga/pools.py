"""Wait for an HTEx's worker pools to register: the one loop the scripts, benchmarks and
tests share, for the local multi-node cluster and Kubernetes alike.

It reads only ``executor.connected_managers()``, Parsl's public API, so it also runs under
stock Parsl (bench/interchange_throughput.py, bench/makespan.py), where pools are counted,
not named.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

POLL_SECONDS = 0.2


def pool_nodes(executor: Any) -> list[str]:
    """The node of every active pool: its ``node_name`` (the fork reports one), else, under
    stock Parsl, which reports neither node nor host, the pool's manager id."""
    return [m.get("node_name") or m["manager"] for m in executor.connected_managers()
            if m.get("active", True)]


def wait_for_pools(executor: Any, expected: int | Collection[str], timeout_s: float = 180.0,
                   *, exactly: bool = False) -> None:
    """Return once the pools are up: *expected* pools, or a pool on each node it names
    (with *exactly*, on those nodes and no others: to wait for a pool to go away).

    :raises TimeoutError: saying how many pools registered, or which nodes are missing
        (or extra), if that does not happen within *timeout_s*
    """
    deadline = time.monotonic() + timeout_s
    while (problem := _unmet(pool_nodes(executor), expected, exactly)) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{problem} within {timeout_s:.0f} s")
        time.sleep(POLL_SECONDS)


def _unmet(nodes: list[str], expected: int | Collection[str], exactly: bool) -> str | None:
    """What is still missing, or None when the pools are as expected."""
    if isinstance(expected, int):
        count_ok = len(nodes) == expected if exactly else len(nodes) >= expected
        return None if count_ok else f"{len(nodes)} of {expected} worker pools registered"
    missing = sorted(set(expected) - set(nodes))
    extra = sorted(set(nodes) - set(expected)) if exactly else []
    if not missing and not extra:
        return None
    return f"no pool on {missing}" if missing else f"pools still on {extra}"
