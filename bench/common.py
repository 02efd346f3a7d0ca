"""What every benchmark of `make bench` shares: the machine, the cluster, the inputs, the
lower bound, summary statistics and where results go.

Runs under the fork's environment and under stock Parsl's (.cache/baseline), so it
imports nothing from Parsl itself.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TRACE_DIR = ROOT.parent / "shared" / "workflows"

# The heterogeneous cluster of issue 8: four nodes, one twice and one four times as fast.
SPEEDS: tuple[float, ...] = (1.0, 1.0, 2.0, 4.0)
# Tasks shorter than this at speed 1 are rounded up (as scripts/plan_workflow.py does):
# a zero-second task would still pay Parsl's per-task cost, which the bound ignores.
MIN_TASK_SECONDS = 0.01

Graph = Mapping[str, tuple[float, Sequence[str]]]
"""{task id: (cost in seconds at speed 1, parent ids)}, as scripts/plan_workflow.py reads."""


@dataclass(frozen=True)
class Cluster:
    speeds: tuple[float, ...]
    slots: int

    @property
    def total_speed(self) -> float:
        return self.slots * sum(self.speeds)

    @property
    def node_names(self) -> list[str]:
        return [f"node-{chr(ord('a') + i)}" for i in range(len(self.speeds))]

    def describe(self) -> str:
        speeds = ", ".join(f"{s:g}" for s in self.speeds)
        return f"{len(self.speeds)} nodes at speeds {speeds}, {self.slots} worker slot(s) each"


def traces() -> list[Path]:
    """The real WfCommons traces, sorted by name."""
    return sorted(TRACE_DIR.glob("*.json"))


def read_trace(path: Path) -> dict[str, tuple[float, list[str]]]:
    """The trace reader of scripts/plan_workflow.py (one reader for the project)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from plan_workflow import read_trace as reader

    return reader(path)


def scaled(graph: Graph, scale: float) -> dict[str, tuple[float, list[str]]]:
    """Costs multiplied by *scale*, with the same floor every configuration gets."""
    return {name: (max(cost * scale, MIN_TASK_SECONDS), list(parents))
            for name, (cost, parents) in graph.items()}


def critical_path(graph: Graph) -> float:
    """The longest chain of costs (at speed 1) through the DAG."""
    finish: dict[str, float] = {}
    order = TopologicalSorter({name: parents for name, (_, parents) in graph.items()})
    for name in order.static_order():
        cost, parents = graph[name]
        finish[name] = cost + max((finish[p] for p in parents), default=0.0)
    return max(finish.values(), default=0.0)


def lower_bound(graph: Graph, cluster: Cluster) -> float:
    """No schedule beats the critical path on the fastest node, nor all work spread
    perfectly over every slot (issue 8's bound)."""
    work = sum(cost for cost, _ in graph.values())
    return max(critical_path(graph) / max(cluster.speeds), work / cluster.total_speed)


def summary(values: Iterable[float]) -> dict[str, float]:
    """Median and spread (min, max) of repeated measurements."""
    data = list(values)
    return {"median": statistics.median(data), "min": min(data), "max": max(data),
            "n": len(data)}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """The machine a result came from, as the report prints it."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.1f} GiB"
    except (ValueError, OSError):
        memory = "unknown"
    return {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
            "memory": memory, "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def write_result(name: str, data: Mapping[str, object]) -> Path:
    """bench/results/<name>.json, with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2))
    return path
