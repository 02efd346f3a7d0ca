"""scripts/plan_workflow.py: a real WfCommons trace planned with HEFT on the local
multi-node cluster, each task on its planned node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TRACE = REPO.parent / "shared" / "workflows" / "epigenomics-chameleon-hep-1seq-100k-001.json"


@pytest.mark.skipif(not TRACE.exists(), reason=f"benchmark traces not found at {TRACE.parent}")
def test_trace_runs_every_task_on_its_planned_node(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-P", str(REPO / "scripts" / "plan_workflow.py"), "--trace", str(TRACE),
         "--scale", "0.005", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "41 of 41 tasks ran on their planned node" in result.stdout
    assert "planned makespan" in result.stdout and "actual makespan" in result.stdout
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["actual_makespan"] is not None
    assert (tmp_path / "gantt.png").stat().st_size > 0
