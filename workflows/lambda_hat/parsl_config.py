"""Parsl configuration from YAML (``config/parsl/local.yaml``).

Each executor is an HTEx with a LocalProvider. Its ``worker_init`` is where precision is
decided: JAX reads ``JAX_ENABLE_X64`` once, at import, so every worker of an executor
has that executor's precision for its lifetime. The loader prepends two exports of its
own: ``LAMBDA_HAT_EXECUTOR`` (so tasks can report the executor they really ran on) and a
``PYTHONPATH`` entry that makes this package importable by workers before it is
installed as part of the project.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lambda_hat.precision import EXECUTOR_ENV

logger = logging.getLogger(__name__)

PACKAGE_PARENT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ExecutorSpec:
    label: str
    max_workers_per_node: int = 1
    worker_init: str = ""
    cores_per_worker: float = 1.0


@dataclass(frozen=True)
class ParslSpec:
    executors: tuple[ExecutorSpec, ...]
    saga_scheduler: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(e.label for e in self.executors)


def load_parsl_spec(path: str | Path) -> ParslSpec:
    raw = yaml.safe_load(Path(path).read_text())
    execs = tuple(ExecutorSpec(**e) for e in raw.get("executors", []))
    if not execs:
        raise ValueError(f"{path}: no executors")
    return ParslSpec(execs, raw.get("saga_scheduler"), raw.get("config", {}) or {})


def only(spec: ParslSpec, label: str, workers: int | None = None) -> ParslSpec:
    """The spec reduced to one executor (the all-x64 workaround), optionally resized."""
    (e,) = [e for e in spec.executors if e.label == label]
    if workers is not None:
        e = ExecutorSpec(e.label, workers, e.worker_init, e.cores_per_worker)
    return ParslSpec((e,), spec.saga_scheduler, spec.extra)


def _worker_init(e: ExecutorSpec) -> str:
    exports = [
        f"export {EXECUTOR_ENV}={shlex.quote(e.label)}",
        f'export PYTHONPATH={shlex.quote(str(PACKAGE_PARENT))}"${{PYTHONPATH:+:$PYTHONPATH}}"',
    ]
    return "; ".join([*exports, e.worker_init] if e.worker_init else exports)


def build_config(spec: ParslSpec, run_dir: str | Path):
    """A Parsl ``Config`` with the spec's executors and ``saga_scheduler`` (None: no plan)."""
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    executors = [
        HighThroughputExecutor(
            label=e.label,
            max_workers_per_node=e.max_workers_per_node,
            cores_per_worker=e.cores_per_worker,
            address="127.0.0.1",
            provider=LocalProvider(
                init_blocks=1, min_blocks=0, max_blocks=1, worker_init=_worker_init(e)
            ),
        )
        for e in spec.executors
    ]
    return Config(
        executors=executors,
        run_dir=str(run_dir),
        saga_scheduler=spec.saga_scheduler,
        **spec.extra,
    )
