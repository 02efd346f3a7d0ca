"""What a run leaves in ``out/<experiment>/``: tables, placements, plots, a JSON summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from lambda_hat.analysis import Estimate, estimate, estimates_table, plot_traces, write_csv
from parsl_saga.markdown import markdown_table

PLACEMENT_COLUMNS = (
    "task", "requested", "parsl_executor", "executor_env", "node", "dtype", "x64", "seconds",
)  # fmt: skip


def placements(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Where every task ran; ``executor_env`` is what the worker itself reported."""
    rows = []
    for name, b in run["builds"].items():
        p = b["placement"]
        rows.append({
            "task": f"build {name}" + (" (cache hit)" if b["cache_hit"] else ""),
            "requested": p["executor"], "parsl_executor": b.get("parsl_executor"),
            "executor_env": p["executor_env"],
            "node": p["node"], "dtype": b["dtype"], "x64": p["jax_enable_x64"],
            "seconds": b["finished"] - b["started"],
        })  # fmt: skip
    for r in run["results"]:
        p = r["placement"]
        rows.append({
            "task": f"{r['sampler']['name']} on {r['target']}",
            "requested": r["requested_executor"], "parsl_executor": r["parsl_executor"],
            "executor_env": p["executor_env"], "node": p["node"], "dtype": r["dtype"],
            "x64": p["jax_enable_x64"], "seconds": r["seconds"],
        })  # fmt: skip
    return rows


def placement_table(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    return markdown_table(PLACEMENT_COLUMNS, [[fmt(r[c]) for c in PLACEMENT_COLUMNS] for r in rows])


def _lane(p: dict[str, Any]) -> tuple[str, str, int]:
    return (p["executor_env"] or "?", p["node"], p["pid"])


def plot_gantt(run: dict[str, Any], path: Path) -> None:
    """Observed task intervals, one lane per executor worker (executor, node, pid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spans = [(f"build {n}", b) for n, b in run["builds"].items()]
    spans += [(f"{r['sampler']['name']}/{r['target']}", r) for r in run["results"]]
    t0 = min(s["started"] for _, s in spans)
    lanes = sorted(
        {
            (s["placement"]["executor_env"] or "?", s["placement"]["node"], s["placement"]["pid"])
            for _, s in spans
        }
    )
    colors = {"float32": "tab:blue", "float64": "tab:orange"}
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(lanes) + 1.2))
    for name, s in spans:
        p = s["placement"]
        y = lanes.index(_lane(p))
        color = colors.get(s["dtype"], "0.6")
        width = s["finished"] - s["started"]
        ax.barh(y, width, left=s["started"] - t0, color=color, edgecolor="k", height=0.6)
        ax.text(s["started"] - t0, y, f" {name}", va="center", fontsize=6)
    ax.set_yticks(range(len(lanes)), [f"{e} · {n} · pid {pid}" for e, n, pid in lanes], fontsize=7)
    ax.set_xlabel("seconds since first task started (blue float32, orange float64)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(run: dict[str, Any], out: Path) -> list[Estimate]:
    out.mkdir(parents=True, exist_ok=True)
    estimates = [estimate(r) for r in run["results"]]
    (out / "results.md").write_text(estimates_table(estimates) + "\n")
    write_csv(estimates, out / "results.csv")
    rows = placements(run)
    (out / "placements.md").write_text(placement_table(rows) + "\n")
    with open(out / "placements.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PLACEMENT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot_traces(run["results"], out / "traces.png")
    plot_gantt(run, out / "gantt_observed.png")
    np.savez_compressed(
        out / "traces.npz",
        **{f"{r['target']}__{r['sampler']['name']}": r["traces"] for r in run["results"]},
    )
    summary = {k: v for k, v in run.items() if k not in ("results", "builds", "plan")}
    summary["plan"] = None if run["plan"] is None else str(run["plan"])
    summary["estimates"] = [e.__dict__ for e in estimates]
    (out / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    return estimates
