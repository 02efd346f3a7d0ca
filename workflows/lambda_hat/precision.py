"""Floating-point precision of a task, and where it ran.

JAX fixes float64 support per process with ``jax_enable_x64`` (read from the environment
variable ``JAX_ENABLE_X64`` at import). A Parsl worker therefore has the precision of the
executor that started it, which is the whole reason samplers are routed by dtype: a
float64 sampler on a float32 worker would silently compute in float32.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from lambda_hat.config import Dtype

# Set by the executors' worker_init (see lambda_hat.parsl_config) so a task can report
# the executor it really ran on, not just the one it was asked to run on.
EXECUTOR_ENV = "LAMBDA_HAT_EXECUTOR"


class PrecisionError(RuntimeError):
    """A task's JAX precision does not match the dtype it was configured with."""


def x64_enabled() -> bool:
    return bool(jax.config.jax_enable_x64)


def require_precision(dtype: Dtype) -> None:
    """Fail unless this process's JAX precision is the one ``dtype`` needs."""
    want = dtype == "float64"
    if x64_enabled() != want:
        raise PrecisionError(
            f"{dtype} task in a process with jax_enable_x64={x64_enabled()}: route it to an "
            f"executor whose workers have JAX_ENABLE_X64={int(want)}"
        )


@contextlib.contextmanager
def precision_scope(dtype: Dtype, *, strict: bool) -> Iterator[None]:
    """Run with ``dtype``'s precision.

    ``strict`` (Parsl tasks): the process must already have it; switching would hide a
    routing mistake. Otherwise (tests, in-process runs) switch JAX's precision for the
    duration of the block.
    """
    if strict:
        require_precision(dtype)
        yield
        return
    with jax.enable_x64(dtype == "float64"):
        yield


def check_dtype(name: str, array: Any, dtype: Dtype) -> None:
    """Assert an array has the task's dtype: the proof that precision is real."""
    got = np.dtype(array.dtype)
    if got != np.dtype(dtype):
        raise PrecisionError(f"{name} has dtype {got}, expected {dtype}")


def node_name() -> str:
    return os.environ.get("PARSL_NODE_NAME") or socket.gethostname()


def placement(executor: str | None) -> dict[str, Any]:
    """Where this task ran: requested executor, the executor's own label, node, pid."""
    return {
        "executor": executor,
        "executor_env": os.environ.get(EXECUTOR_ENV),
        "node": node_name(),
        "pid": os.getpid(),
        "jax_enable_x64": x64_enabled(),
    }
