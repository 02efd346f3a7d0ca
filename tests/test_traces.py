"""parsl_saga.traces: the one WfFormat reader and dependency-order walk the scripts and
benchmarks use, on a small trace written here (no shared/ needed)."""

from __future__ import annotations

import json
from graphlib import CycleError
from pathlib import Path

import pytest

from parsl_saga.traces import MIN_TASK_SECONDS, read_trace, scaled, submit_graph

# A diamond with its tasks listed children first: a reader must not rely on file order.
TASKS = {"d": (0.5, ["b", "c"]), "b": (2.0, ["a"]), "c": (1.0, ["a"]), "a": (0.25, [])}


def write_wfformat(path: Path, tasks: dict[str, tuple[float, list[str]]]) -> Path:
    """A minimal WfFormat 1.5 document: specification (ids, parents), execution (runtimes)."""
    spec = [{"id": n, "name": n, "parents": p, "children": [c for c, (_, q) in tasks.items()
                                                            if n in q]}
            for n, (_, p) in tasks.items()]
    execution = [{"id": n, "runtimeInSeconds": cost} for n, (cost, _) in tasks.items()]
    path.write_text(json.dumps({"schemaVersion": "1.5", "workflow": {
        "specification": {"tasks": spec, "files": []},
        "execution": {"tasks": execution, "machines": []}}}))
    return path


def test_read_trace_gives_runtimes_and_parents(tmp_path: Path) -> None:
    assert read_trace(write_wfformat(tmp_path / "t.json", TASKS)) == TASKS


def test_submit_graph_submits_parents_first() -> None:
    order: list[str] = []

    def submit(cost: float, parents: list[str]) -> str:
        name = next(n for n, (c, _) in TASKS.items() if c == cost)
        assert sorted(parents) == sorted(TASKS[name][1])  # the parents' own "futures"
        order.append(name)
        return name

    futures = submit_graph(TASKS, submit)
    assert futures == {n: n for n in TASKS}
    assert order[0] == "a" and order[-1] == "d"


def test_a_cycle_is_an_error() -> None:
    with pytest.raises(CycleError):
        submit_graph({"a": (1.0, ["b"]), "b": (1.0, ["a"])}, lambda cost, parents: None)


def test_scaled_never_goes_below_the_floor() -> None:
    assert scaled({"a": (0.0, []), "b": (10.0, ["a"])}, 0.5) == {
        "a": (MIN_TASK_SECONDS, []), "b": (5.0, ["a"])}
