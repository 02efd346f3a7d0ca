"""Gantt charts of a plan (``parsl.dataflow.planning.Plan``): planned against actual.

Parsl's core keeps the plan's data (``Plan.to_json()``, ``Plan.summary()``); drawing
needs matplotlib, so it lives here.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from parsl.dataflow.planning import Plan, PlannedTask

# Planned bars, by the source of the task's cost estimate (CostModel).
SOURCE_COLOURS = {"hint": "tab:blue", "app": "tab:green", "history": "tab:orange",
                  "default": "tab:gray"}
# Actual bars of tasks the run moved off their planned node, by the last move's reason
# (PlannedTask.moves); tasks that ran where planned are gray.
MOVE_COLOURS = {"stolen": "tab:red", "node lost": "tab:purple", "node unavailable": "tab:pink",
                "rerun": "tab:brown", "replanned": "tab:cyan"}


def plot_plan(plan: Plan, path: str | Path) -> None:
    """Draw *plan*'s planned against actual start and end per node as a PNG.

    Planned bars are coloured by the source of their cost estimate and labelled
    ``<task id>: <cost>``; actual bars (launch to result, seen by the DFK), on the node
    each task ran on, by task id, coloured by why the run moved the task if it did, with
    a tick at each move's time, and a dashed line at each re-plan (``Plan.replans``).
    """
    nodes = sorted({t.node for t in plan.tasks.values()} | {t.ran_on for t in plan.tasks.values()})
    # A Figure of its own, not pyplot: no backend is chosen or changed for the caller.
    fig = Figure(figsize=(10, 1.5 + 1.6 * len(nodes)))
    axes = fig.subplots(2, 1, sharex=True)
    panels = ((axes[0], f"planned ({plan.scheduler})", False),
              (axes[1], "actual (launch to result, seen by the DFK)", True))
    for ax, title, actual in panels:
        for row, node in enumerate(nodes):
            for task in plan.tasks.values():
                if (task.ran_on if actual else task.node) == node:
                    _draw_bar(ax, row, task, actual)
        ax.set_yticks(range(len(nodes)))
        ax.set_yticklabels(nodes)
        ax.set_title(title)
    sources = sorted({t.cost_source for t in plan.tasks.values()})
    axes[0].legend(handles=[Patch(facecolor=SOURCE_COLOURS.get(s, "tab:gray"), alpha=0.6,
                                  label=f"cost: {s}") for s in sources],
                   fontsize=7, loc="upper right")
    reasons = sorted({t.moves[-1]["reason"] for t in plan.moved})
    if reasons:
        axes[1].legend(handles=[Patch(facecolor=MOVE_COLOURS.get(r, "tab:olive"), alpha=0.6,
                                      label=r) for r in reasons],
                       fontsize=7, loc="upper right")
    for replan in plan.replans:
        axes[1].axvline(replan["time"], color=MOVE_COLOURS["replanned"], linestyle="--",
                        linewidth=0.8)
    axes[1].set_xlabel("seconds since launch")
    fig.tight_layout()
    fig.savefig(path)


def _draw_bar(ax: Axes, row: int, task: PlannedTask, actual: bool) -> None:
    start, end = (task.actual_start, task.actual_end) if actual else (task.start, task.end)
    if start is None or end is None:
        return
    if actual:
        reason = task.moves[-1]["reason"] if task.moves else None
        colour = MOVE_COLOURS.get(reason, "tab:olive") if reason else "tab:gray"
        for move in task.moves:
            ax.plot([move["time"]], [row + 0.45], marker="v", markersize=4, color=colour)
    else:
        colour = SOURCE_COLOURS.get(task.cost_source, "tab:gray")
    ax.broken_barh([(start, max(end - start, 1e-3))], (row - 0.4, 0.8), alpha=0.6,
                   edgecolor="black", facecolor=colour)
    label = str(task.task_id) if actual else f"{task.task_id}: {task.cost:.3g}"
    ax.text(start, row, label, va="center", fontsize=7)
