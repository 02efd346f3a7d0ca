"""What every benchmark of `make bench` shares: the machine, the cluster, the inputs, the
lower bound, summary statistics and where results go.

Runs under the fork's environment and under stock Parsl's (.cache/baseline), so it
imports nothing from Parsl itself; task graphs are parsl_saga.traces'.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from parsl_saga.traces import Graph, dependency_order

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# The WfCommons traces: in shared/ beside the repository, as on developers' machines and
# in CI's clean clone (see shared/workflows/README.md); not in the repository itself.
TRACE_DIR = ROOT.parent / "shared" / "workflows"

# The heterogeneous cluster of issue 8: four nodes, one twice and one four times as fast.
SPEEDS: tuple[float, ...] = (1.0, 1.0, 2.0, 4.0)

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


def critical_path(graph: Graph) -> float:
    """The longest chain of costs (at speed 1) through the DAG."""
    finish: dict[str, float] = {}
    for name in dependency_order(graph):
        cost, parents = graph[name]
        finish[name] = cost + max((finish[p] for p in parents), default=0.0)
    return max(finish.values(), default=0.0)


# Relative gap under which two makespans are the same: two planners sum the same costs in
# different orders, so equal plans differ by float rounding only.
SAME_MAKESPAN_RTOL = 1e-9


def same_makespan(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=SAME_MAKESPAN_RTOL)


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


def run_script(script: str, *args: str) -> str:
    """Run one of scripts/ (they are programs, not modules to import); its last line."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def stock_python() -> Path:
    """The interpreter of the pinned upstream Parsl's environment (.cache/baseline)."""
    return Path(run_script("parsl_suite.py", "python"))


def write_result(name: str, data: Mapping[str, object]) -> Path:
    """bench/results/<name>.json, with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2))
    return path
