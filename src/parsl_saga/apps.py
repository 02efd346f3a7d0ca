"""The Parsl app that the demo, the scripts, the benchmarks and the tests run.

Only Parsl's public API: bench/makespan.py also runs it under stock Parsl, whose workers
unpickle it by reference from this module.
"""

from __future__ import annotations

from typing import Any

import parsl


@parsl.python_app
def sleep_task(seconds: float, *parents: Any,
               parsl_resource_specification: dict[str, Any] | None = None) -> str:
    """Do *seconds* of reference-speed work on this node; return the node's name.

    *parents* are the futures it depends on, only for their order. The work is
    :func:`parsl_saga.local_cluster.work` (a sleep scaled by ``PARSL_NODE_SPEED``, 1 when
    unset). The name is the fork's pool's: ``PARSL_NODE_NAME``, else the host name.
    Parsl passes the resource specification on to the app, so the app must accept it.
    """
    import os
    import socket

    from parsl_saga.local_cluster import work

    work(seconds)
    return os.environ.get("PARSL_NODE_NAME") or socket.gethostname()
