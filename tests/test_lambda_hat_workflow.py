"""lambda_hat through real Parsl HTEx executors: routing by dtype, and precision proof.

``config/test.yaml`` runs on ``config/parsl/local.yaml``'s two LocalProvider executors:
htex32 (JAX_ENABLE_X64=0) and htex64 (JAX_ENABLE_X64=1). Every task reports the executor
label its worker was started with, whether x64 was on, and the dtype of its arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("blackjax")

from lambda_hat.cli import run_experiment
from lambda_hat.config import load_config
from lambda_hat.precision import PrecisionError, precision_scope, require_precision
from lambda_hat.workflow import executor_for

ROOT = Path(__file__).resolve().parent.parent
TEST_CONFIG = ROOT / "config" / "test.yaml"
PARSL_CONFIG = ROOT / "config" / "parsl" / "local.yaml"


def test_executor_for_dtype() -> None:
    assert executor_for("float64") == "htex64"
    assert executor_for("float32") == "htex32"
    with pytest.raises(ValueError, match="bfloat16"):
        executor_for("bfloat16")


def test_float64_task_refuses_a_float32_process() -> None:
    with precision_scope("float32", strict=False):
        with pytest.raises(PrecisionError, match="JAX_ENABLE_X64=1"):
            require_precision("float64")
        require_precision("float32")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("lambda_hat")
    return run_experiment(load_config(TEST_CONFIG), PARSL_CONFIG, tmp / "out", tmp / "artifacts")


def test_each_dtype_ran_in_its_precision_on_its_executor(run: dict[str, Any]) -> None:
    assert len(run["results"]) == 4
    for r in run["results"]:
        where = r["placement"]
        dtype = r["sampler"]["dtype"]
        expected = executor_for(dtype)
        assert r["dtype"] == dtype  # the traces' own dtype
        assert where["executor_env"] == expected  # the worker's executor, not the request
        assert r["parsl_executor"] == expected
        assert where["jax_enable_x64"] is (dtype == "float64")
        assert where["node"]
    kinds = {r["sampler"]["kind"]: r["placement"]["executor_env"] for r in run["results"]}
    assert kinds == {"sgld": "htex32", "vi": "htex32", "hmc": "htex64", "mclmc": "htex64"}


def test_targets_are_built_in_float64_first(run: dict[str, Any]) -> None:
    (build,) = run["builds"].values()
    assert build["dtype"] == "float64"
    assert build["placement"]["executor_env"] == "htex64"
    for r in run["results"]:
        assert r["started"] >= build["finished"]  # each sampler waited for its target


def test_outputs_written(run: dict[str, Any]) -> None:
    out = Path(run["out"])
    for name in ("results.md", "results.csv", "placements.md", "traces.png", "run.json"):
        assert (out / name).stat().st_size > 0, name
    estimates = run["estimates"]
    assert {e.sampler for e in estimates} == {"sgld", "vi", "hmc", "mclmc"}
    assert all(e.known == 1.5 for e in estimates)  # linear, d = 3
    assert "htex64" in (out / "placements.md").read_text()


def test_one_app_routed_per_call_and_planned_as_one_dag(run: dict[str, Any]) -> None:
    plan = run["plan"]
    assert plan is not None and plan.scheduler == "heft"
    planned = {t.task_id: t for t in plan.tasks.values()}
    assert len(planned) == len(run["results"]) + len(run["builds"])
    for r in run["results"]:
        assert planned[r["task_id"]].executor == executor_for(r["sampler"]["dtype"])
    assert plan.actual_makespan is not None
    out = Path(run["out"])
    assert (out / "gantt.png").stat().st_size > 0
    assert (out / "plan.json").stat().st_size > 0
