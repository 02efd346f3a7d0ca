"""Orchestration: targets x samplers as Parsl apps, each sampler routed by its dtype.

Two apps, ``build_target`` and ``run_sampler``, serve every precision: the executor is
chosen per call, not by duplicating apps per dtype. The fork's per-call routing takes
the executor from ``parsl_resource_specification={"executor": label}`` (Parsl issue
#2556), with an optional ``"cost"`` hint (seconds) for the planner. On a Parsl without
that routing the key is rejected, and :class:`Router` falls back to one ``PythonApp``
per executor over the same function (the ``executors=[label]`` argument), saying so.

With deferred planning (``Config(saga_scheduler="heft")`` and ``dfk.execute()``),
everything is registered first and then planned as one DAG; otherwise tasks start as
soon as they are submitted.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from parsl import python_app
from parsl.app.python import PythonApp

from lambda_hat.config import Dtype, ExperimentConfig
from lambda_hat.precision import EXECUTOR_ENV

logger = logging.getLogger(__name__)

X64_EXECUTOR = "htex64"
X32_EXECUTOR = "htex32"


def executor_for(dtype: Dtype | str, *, x64: str = X64_EXECUTOR, x32: str = X32_EXECUTOR) -> str:
    """The executor whose workers have the precision ``dtype`` needs."""
    if dtype == "float64":
        return x64
    if dtype == "float32":
        return x32
    raise ValueError(f"no executor for dtype {dtype!r}: expected float32 or float64")


@python_app
def build_target(
    target: dict[str, Any],
    root: str,
    executor: str | None = None,
    parsl_resource_specification: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from lambda_hat.tasks import build_target_task

    return build_target_task(target, root, executor)


@python_app
def run_sampler(
    target_meta: dict[str, Any],
    sampler: dict[str, Any],
    gamma: float,
    executor: str | None = None,
    parsl_resource_specification: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from lambda_hat.tasks import run_sampler_task

    return run_sampler_task(target_meta, sampler, gamma, executor)


@python_app
def whereami(parsl_resource_specification: dict[str, Any] | None = None) -> str | None:
    """The label of the executor this ran on (set by its worker_init)."""
    import os

    from lambda_hat.precision import EXECUTOR_ENV

    return os.environ.get(EXECUTOR_ENV)


def _flush(dfk: Any) -> Any:
    """Start what is registered: ``dfk.execute()`` on a planning DFK, else nothing."""
    return dfk.execute() if hasattr(dfk, "execute") else None


@dataclass
class Router:
    """Submits an app call to a chosen executor, by whatever means this Parsl supports.

    ``mode`` is ``"resource_spec"`` (the fork's per-call routing, with ``cost`` if
    accepted) or ``"executors"`` (fallback: the same function wrapped once per label).
    """

    mode: str = "resource_spec"
    with_cost: bool = True
    _pinned: dict[tuple[Callable, str], PythonApp] = field(default_factory=dict)

    def submit(self, app: PythonApp, label: str, cost: float | None, *args: Any, **kwargs: Any):
        if self.mode == "resource_spec":
            spec: dict[str, Any] = {"executor": label}
            if self.with_cost and cost is not None:
                spec["cost"] = float(cost)
            return app(*args, parsl_resource_specification=spec, **kwargs)
        key = (app.func, label)
        if key not in self._pinned:
            self._pinned[key] = PythonApp(app.func, executors=[label])
        return self._pinned[key](*args, **kwargs)


def probe_routing(dfk: Any, labels: tuple[str, ...], timeout: float = 180.0) -> Router:
    """Find out whether this Parsl routes by ``parsl_resource_specification``.

    A probe task goes to each label by the routing key and reports the executor it ran
    on. Routing counts as supported only if every probe lands where it was sent: an
    upstream Parsl picks an executor at random and HTEx rejects the unknown key.
    """
    # A rejected probe is an expected answer, not an error: keep Parsl's tracebacks
    # for it out of the terminal (they still go to the run directory's parsl.log).
    parsl_logger = logging.getLogger("parsl")
    with _quiet(parsl_logger):
        router = _probe(dfk, labels, timeout)
    if router is not None:
        return router
    print(
        "routing: this Parsl does not accept parsl_resource_specification={'executor': ...}; "
        "falling back to executors=[label] per call (same apps, one wrapper per executor)",
        flush=True,
    )
    return Router("executors", False)


@contextlib.contextmanager
def _quiet(log: logging.Logger):
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    filt = _DropFrom(log.name)
    for h in handlers:
        h.addFilter(filt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(filt)


class _DropFrom(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(self.prefix)


def _probe(dfk: Any, labels: tuple[str, ...], timeout: float) -> Router | None:
    for with_cost in (True, False):
        router = Router("resource_spec", with_cost)
        try:
            futures = {
                label: router.submit(whereami, label, 0.0 if with_cost else None)
                for label in labels
            }
            _flush(dfk)
            # Wait for every probe, so none fails (and logs) after the quiet period.
            concurrent.futures.wait(list(futures.values()), timeout=timeout)
            landed = {label: f.result(timeout=0) for label, f in futures.items()}
        except Exception as e:  # rejected at submit or in the executor: either means no
            logger.debug("routing probe (cost=%s) failed: %r", with_cost, e)
            continue
        if all(landed[label] == label for label in labels):
            return router
        logger.debug("routing probe (cost=%s) landed wrong: %s", with_cost, landed)
    return None


@dataclass
class Stage:
    name: str
    futures: list[Any] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(f.done() for f in self.futures)


def show_progress(stages: list[Stage], started: float, poll: float = 1.0, out=sys.stdout) -> None:
    """Print ``build 2/2 · sample 3/8`` each time a task finishes, until all have."""
    last = None
    while True:
        status = " · ".join(f"{s.name} {s.done}/{len(s.futures)}" for s in stages)
        if status != last:
            print(f"[{time.perf_counter() - started:7.1f}s] {status}", file=out, flush=True)
            last = status
        if all(s.done == len(s.futures) for s in stages):
            return
        all_futures = [f for s in stages for f in s.futures if not f.done()]
        concurrent.futures.wait(all_futures, timeout=poll, return_when="FIRST_COMPLETED")


@dataclass
class Submitted:
    builds: dict[str, Any]
    samples: list[tuple[str, str, str, Any]]  # (target, sampler, requested executor, future)


def submit_all(
    cfg: ExperimentConfig, router: Router, artifacts: str, *, all_x64: bool = False
) -> Submitted:
    """Register every task: a build per target, then each sampler on each target.

    ``all_x64`` is the workaround this workflow exists to retire: every sampler runs in
    float64 on the x64 executor.
    """
    builds = {
        t.name: router.submit(
            build_target,
            executor_for("float64"),
            None,
            asdict(t),
            artifacts,
            executor_for("float64"),
        )
        for t in cfg.targets
    }
    samples = []
    for t in cfg.targets:
        for s in cfg.samplers:
            if all_x64:
                s = replace(s, dtype="float64")
            label = executor_for(s.dtype)
            fut = router.submit(
                run_sampler, label, s.cost, builds[t.name], asdict(s), cfg.gamma_for(s), label
            )
            samples.append((t.name, s.name, label, fut))
    return Submitted(builds, samples)


def run_workflow(
    cfg: ExperimentConfig,
    dfk: Any,
    labels: tuple[str, ...],
    artifacts: str,
    *,
    all_x64: bool = False,
) -> dict[str, Any]:
    """Run the experiment on a loaded DFK; return results, placements and the plan."""
    started = time.perf_counter()
    router = (
        probe_routing(dfk, labels) if not all_x64 or len(labels) > 1 else Router("executors", False)
    )
    print(
        f"routing mode: {router.mode}" + (" (+cost hints)" if router.with_cost else ""), flush=True
    )
    submitted = submit_all(cfg, router, artifacts, all_x64=all_x64)
    plan = _flush(dfk)
    if plan is not None:
        print("plan:", plan, sep="\n", flush=True)
    stages = [
        Stage("build", list(submitted.builds.values())),
        Stage("sample", [f for *_, f in submitted.samples]),
    ]
    show_progress(stages, started)
    builds = {
        name: {**f.result(), "parsl_executor": f.task_record.get("executor")}
        for name, f in submitted.builds.items()
    }
    results = []
    for _target, _sampler, label, fut in submitted.samples:
        result = fut.result()
        result["requested_executor"] = label
        result["parsl_executor"] = fut.task_record.get("executor")
        results.append(result)
    return {
        "builds": builds,
        "results": results,
        "plan": plan,
        "routing": router.mode,
        "cost_hints": router.with_cost,
        "wall_seconds": time.perf_counter() - started,
        "pid": os.getpid(),
        "executor_env": EXECUTOR_ENV,
    }
