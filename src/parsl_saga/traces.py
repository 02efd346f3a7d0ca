"""Task graphs: WfCommons traces read as ``{task id: (cost, parent ids)}``, costs scaled,
and tasks visited or submitted parents first.

Only the standard library: the benchmarks import it under stock Parsl's environment too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from graphlib import TopologicalSorter
from pathlib import Path

Graph = Mapping[str, tuple[float, Sequence[str]]]
"""{task id: (cost in seconds at speed 1, parent ids)}."""

# Tasks shorter than this at speed 1 are rounded up: a zero-second task would still pay
# Parsl's per-task cost, which a planner's model and the benchmarks' bound ignore.
MIN_TASK_SECONDS = 0.01


def read_trace(path: Path) -> dict[str, tuple[float, list[str]]]:
    """The graph of a WfCommons (WfFormat 1.5) trace: each task's runtime and parents."""
    workflow = json.loads(path.read_text())["workflow"]
    runtimes = {t["id"]: float(t["runtimeInSeconds"]) for t in workflow["execution"]["tasks"]}
    return {t["id"]: (runtimes[t["id"]], list(t["parents"]))
            for t in workflow["specification"]["tasks"]}


def read_programs(path: Path) -> dict[str, str]:
    """Each task's program in a WfCommons (WfFormat 1.5) trace: what one app would run."""
    workflow = json.loads(path.read_text())["workflow"]
    return {t["id"]: t["command"]["program"] for t in workflow["execution"]["tasks"]}


def scaled(graph: Graph, scale: float) -> dict[str, tuple[float, list[str]]]:
    """Costs multiplied by *scale*, none below ``MIN_TASK_SECONDS``."""
    return {name: (max(cost * scale, MIN_TASK_SECONDS), list(parents))
            for name, (cost, parents) in graph.items()}


def dependency_order(graph: Graph) -> Iterator[str]:
    """Every task after its parents. :raises graphlib.CycleError: naming a cycle"""
    return TopologicalSorter({name: parents for name, (_, parents) in graph.items()}
                             ).static_order()


def submit_graph[F](graph: Graph, submit: Callable[[float, list[F]], F]) -> dict[str, F]:
    """``submit(cost, parents' futures)`` for every task, parents first; the futures by id."""
    futures: dict[str, F] = {}
    for name in dependency_order(graph):
        cost, parents = graph[name]
        futures[name] = submit(cost, [futures[p] for p in parents])
    return futures
