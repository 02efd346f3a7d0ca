"""parsl_saga.gantt draws a plan's planned and actual bars (Parsl's core draws nothing)."""

from __future__ import annotations

from pathlib import Path

from parsl.dataflow.planning import Plan, PlannedTask

from parsl_saga.gantt import plot_plan


def test_a_plan_is_drawn_to_a_png(tmp_path: Path) -> None:
    tasks = [PlannedTask(task_id=i, app="f", executor="htex", node=f"n{i % 2}",
                         slot=f"htex:n{i % 2}#0", start=float(i), end=i + 1.0, priority=i,
                         cost=1.0, cost_source=source)
             for i, source in enumerate(["hint", "history", "default"])]
    plan = Plan("heft", tasks)
    tasks[0].actual_start, tasks[0].actual_end = 0.1, 1.2  # the others never ran
    path = tmp_path / "gantt.png"
    plot_plan(plan, path)
    assert path.read_bytes().startswith(b"\x89PNG")
