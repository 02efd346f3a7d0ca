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
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator

from lambda_hat.config import Strict, parse_yaml
from lambda_hat.precision import EXECUTOR_ENV

logger = logging.getLogger(__name__)

PACKAGE_PARENT = Path(__file__).resolve().parent.parent
# Config arguments the loader sets itself; the file's ``config:`` must not repeat them.
SET_BY_LOADER = frozenset({"executors", "run_dir", "dag_scheduler"})


class ExecutorSpec(Strict):
    label: str = Field(min_length=1)
    max_workers_per_node: int = Field(1, ge=1)
    worker_init: str = ""
    cores_per_worker: float = Field(1.0, gt=0)


class ParslSpec(Strict):
    executors: tuple[ExecutorSpec, ...]
    dag_scheduler: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict, alias="config")
    """Further keyword arguments of Parsl's ``Config``."""

    @field_validator("executors")
    @classmethod
    def _some_with_unique_labels(
        cls, executors: tuple[ExecutorSpec, ...]
    ) -> tuple[ExecutorSpec, ...]:
        # An after-validator: runs only once every entry is valid, so it adds no noise.
        if not executors:
            raise ValueError("at least one executor is needed")
        labels = [e.label for e in executors]
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique: {labels}")
        return executors

    @field_validator("extra", mode="before")
    @classmethod
    def _not_set_by_loader(cls, extra: Any) -> Any:
        clash = sorted(SET_BY_LOADER & set(extra or {}))
        if clash:
            raise ValueError(f"{clash} are set by the loader, not under config:")
        return extra or {}

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(e.label for e in self.executors)


def load_parsl_spec(path: str | Path) -> ParslSpec:
    """The executors of a YAML file; a wrong or misspelt key is a ConfigError naming it."""
    return parse_yaml(ParslSpec, yaml.safe_load(Path(path).read_text()), str(path))


def only(spec: ParslSpec, label: str, workers: int | None = None) -> ParslSpec:
    """The spec reduced to one executor (the all-x64 workaround), optionally resized."""
    matching = [e for e in spec.executors if e.label == label]
    if not matching:
        raise ValueError(f"no executor {label!r} in the Parsl spec; it has {spec.labels}")
    (e,) = matching
    if workers is not None:
        e = e.model_copy(update={"max_workers_per_node": workers})
    return spec.model_copy(update={"executors": (e,)})


def _worker_init(e: ExecutorSpec) -> str:
    exports = [
        f"export {EXECUTOR_ENV}={shlex.quote(e.label)}",
        f'export PYTHONPATH={shlex.quote(str(PACKAGE_PARENT))}"${{PYTHONPATH:+:$PYTHONPATH}}"',
    ]
    return "; ".join([*exports, e.worker_init] if e.worker_init else exports)


def build_config(spec: ParslSpec, run_dir: str | Path):
    """A Parsl ``Config`` with the spec's executors and ``dag_scheduler`` (None: no plan)."""
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
        dag_scheduler=spec.dag_scheduler,
        **spec.extra,
    )
