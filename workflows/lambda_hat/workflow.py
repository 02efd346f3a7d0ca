"""Orchestration: targets x samplers as Parsl apps, each sampler routed by its dtype.

Two apps, ``build_target`` and ``run_sampler``, serve every precision: the executor is
chosen per call with the fork's routing key,
``parsl_resource_specification={"executor": label}`` (Parsl issue #2556), not by
duplicating apps per dtype. With deferred planning (``Config(dag_scheduler="heft")``),
every task is registered first, with a ``"cost"`` hint (seconds at speed 1) where the
config gives one, then ``dfk.execute()`` plans the whole DAG and launches it with node
affinity; without a scheduler, tasks start as soon as they are submitted.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from parsl import python_app
from parsl.app.python import PythonApp

from lambda_hat.config import Dtype, ExperimentConfig
from lambda_hat.precision import EXECUTOR_ENV

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


def planning(dfk: Any) -> bool:
    """Whether the DFK defers tasks for a whole-DAG plan (``Config(dag_scheduler=...)``)."""
    return dfk.planner is not None


def submit_routed(
    app: PythonApp, label: str, cost: float | None, plan: bool, *args: Any
) -> Any:
    """Call ``app`` on executor ``label``; with planning, pass the cost hint too (an
    executor without planning would reject the unknown ``cost`` key)."""
    spec: dict[str, Any] = {"executor": label}
    if plan and cost is not None:
        spec["cost"] = float(cost)
    return app(*args, parsl_resource_specification=spec)


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
    cfg: ExperimentConfig, artifacts: str, *, plan: bool, all_x64: bool = False
) -> Submitted:
    """Register every task: a build per target, then each sampler on each target.

    ``all_x64`` is the workaround this workflow exists to retire: every sampler runs in
    float64 on the x64 executor.
    """
    x64 = executor_for("float64")
    builds = {
        t.name: submit_routed(build_target, x64, t.cost, plan, t.model_dump(), artifacts, x64)
        for t in cfg.targets
    }
    samples = []
    for t in cfg.targets:
        for s in cfg.samplers:
            if all_x64:
                s = s.model_copy(update={"dtype": "float64"})
            label = executor_for(s.dtype)
            sampler = s.model_dump()
            fut = submit_routed(
                run_sampler, label, s.cost, plan, builds[t.name], sampler, cfg.gamma_for(s), label
            )
            samples.append((t.name, s.name, label, fut))
    return Submitted(builds, samples)


def run_workflow(
    cfg: ExperimentConfig, dfk: Any, artifacts: str, *, all_x64: bool = False
) -> dict[str, Any]:
    """Run the experiment on a loaded DFK; return results, placements and the plan."""
    started = time.perf_counter()
    plan_dag = planning(dfk)
    submitted = submit_all(cfg, artifacts, plan=plan_dag, all_x64=all_x64)
    plan = dfk.execute() if plan_dag else None
    if plan is not None:
        print(f"plan: {plan}", plan.summary(), sep="\n", flush=True)
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
        result["task_id"] = fut.tid
        result["parsl_executor"] = fut.task_record.get("executor")
        results.append(result)
    return {
        "builds": builds,
        "results": results,
        "plan": plan,
        "wall_seconds": time.perf_counter() - started,
        "pid": os.getpid(),
        "executor_env": EXECUTOR_ENV,
    }
