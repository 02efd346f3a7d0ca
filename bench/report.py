"""Render docs/benchmarks.md and its plots from the results of one `make bench` run.

Reads bench/results/run.json (written by bench/run.py: the mode, the steps that ran and
whether they succeeded) and the result file of each successful step. Every number in the
report is computed here from those files; a step that did not run in this run is
reported as not run, never filled from an older file.

    uv run python bench/report.py
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, ROOT, SAME_MAKESPAN_RTOL

from parsl_saga.markdown import markdown_table

DOCS = ROOT / "docs"
REPORT = DOCS / "benchmarks.md"
PLANNED = ("fork-heft", "fork-cpop")
LABELS = {"stock": "stock Parsl", "fork-none": "fork, no plan", "fork-heft": "fork + HEFT",
          "fork-cpop": "fork + CPOP"}
GOALS = {"speedup": 1.25, "bound": 1.15, "plan": 0.10}

Row = Sequence[object]


def save(fig: Any, name: str) -> Path:
    """Write a figure beside the report and close it."""
    fig.tight_layout()
    path = DOCS / name
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text())


def geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def table(header: Row, rows: Sequence[Row]) -> list[str]:
    """The report's lines of a table, and the blank line after it."""
    return [*markdown_table(header, rows).splitlines(), ""]


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """Median with the range over repeats, e.g. ``1.92 (1.85-2.10)``."""
    if len(values) == 1:
        return fmt.format(values[0])
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}-{fmt.format(max(values))})")


def x(value: float) -> str:
    return f"{value:.2f}x"


# -- makespan in real execution --------------------------------------------------------------

def per_trace(runs: list[dict[str, Any]], trace: str, key: str | Callable[[dict], float]
              ) -> list[float]:
    get = key if callable(key) else (lambda r: r[key])
    return [get(r) for r in runs if r["trace"] == trace]


def makespan_section(data: dict[str, Any]) -> list[str]:
    settings = data["settings"]
    out = ["## 1. Makespan of the real traces, in real execution", "",
           f"Each of the six traces runs on the local multi-node cluster "
           f"(`src/parsl_saga/local_cluster.py`, one HTEx worker pool per node, nodes at "
           f"speeds {', '.join(f'{s:g}' for s in data['shapes'][0]['speeds'])}); every task "
           f"sleeps for its recorded runtime x scale / its node's speed. Each trace's scale puts "
           f"its lower bound at {settings['target']:g} s. Per configuration: "
           f"{settings['repeats']} cluster(s), each running every trace {settings['rounds']} "
           f"times; figures are medians with the range over those "
           f"{settings['repeats'] * settings['rounds']} runs in brackets. Makespan = wall time "
           "from the first submit to the last result, so the fork's deferred submission and "
           "planning are included. *Stock Parsl* is the pinned upstream release, unpatched, in "
           "its own environment (`.cache/baseline`), on the same nodes.", ""]
    for shape in data["shapes"]:
        out += shape_section(shape)
    return out


def medians(shape: dict[str, Any], config: str) -> dict[str, float]:
    runs = shape["runs"][config]
    return {c["trace"]: statistics.median(per_trace(runs, c["trace"], "makespan"))
            for c in shape["cases"]}


def shape_section(shape: dict[str, Any]) -> list[str]:
    configs = list(shape["runs"])
    med = {c: medians(shape, c) for c in configs}
    cases = shape["cases"]
    bound = {c["trace"]: c["lower_bound"] for c in cases}
    out = [f"### {shape['slots']} worker slot(s) per node", "",
           "Makespan in seconds:", ""]
    rows = [[c["trace"], c["tasks"], f"{c['scale']:.4g}", f"{c['lower_bound']:.2f}",
             *best_columns(c),
             *(spread(per_trace(shape["runs"][k], c["trace"], "makespan")) for k in configs)]
            for c in cases]
    out += table(["trace", "tasks", "scale", "lower bound", "CP-SAT best (proven bound)",
                  *(LABELS[k] for k in configs)], rows)

    planned = [k for k in PLANNED if k in configs]
    out += ["Ratios (of medians): stock / fork is the fork's speed-up over stock Parsl (above 1 "
            "is better); makespan / bound (1 is optimal); actual / planned compares the "
            "makespan measured from the plan's launch with the plan's own.", ""]
    header = ["trace", *(f"stock / {LABELS[k]}" for k in planned),
              *(f"{LABELS[k]} / bound" for k in configs),
              *(f"{LABELS[k]} actual / planned" for k in planned)]
    rows = []
    for c in cases:
        t = c["trace"]
        rows.append([t, *(x(med["stock"][t] / med[k][t]) for k in planned),
                     *(x(med[k][t] / bound[t]) for k in configs),
                     *(spread(per_trace(shape["runs"][k], t, plan_ratio), "{:.2f}")
                       for k in planned)])
    rows.append(["**geometric mean**",
                 *(x(geomean([med["stock"][t] / med[k][t] for t in bound])) for k in planned),
                 *(x(geomean([med[k][t] / bound[t] for t in bound])) for k in configs),
                 *(x(geomean([statistics.median(per_trace(shape["runs"][k], t, plan_ratio))
                              for t in bound])) for k in planned)])
    out += table(header, rows)
    out += goals(shape, med, bound)
    out += losses(shape, med)
    out += [f"![makespan over the lower bound, {shape['slots']} slot(s) per node]"
            f"({plot_makespan(shape, med, bound).name})", ""]
    return out


def best_columns(case: dict[str, Any]) -> list[str]:
    if "best" not in case:
        return ["-"]
    best = case["best"]
    proven = "optimal" if best["optimal"] else f"{max(best['bound'], case['lower_bound']):.2f}"
    return [f"{best['makespan']:.2f} ({proven})"]


def plan_ratio(run: dict[str, Any]) -> float:
    return run["actual_from_launch"] / run["planned"]


def goals(shape: dict[str, Any], med: dict[str, dict[str, float]],
          bound: dict[str, float]) -> list[str]:
    if "fork-heft" not in med:
        return []
    heft = med["fork-heft"]
    speedup = geomean([med["stock"][t] / heft[t] for t in bound])
    over_bound = geomean([heft[t] / bound[t] for t in bound])
    worst_plan = max(abs(statistics.median(per_trace(shape["runs"]["fork-heft"], t,
                                                     plan_ratio)) - 1) for t in bound)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    excess = statistics.median(r["task_excess_s"] for r in shape["runs"]["fork-heft"])
    task = statistics.median(r["task_planned_s"] for r in shape["runs"]["fork-heft"])
    return ["Issue 8's goals for the fork with HEFT on this cluster:", "",
            f"- at least {GOALS['speedup']}x shorter than stock Parsl (geometric mean): "
            f"{x(speedup)}, {verdict(speedup >= GOALS['speedup'])};",
            f"- within {GOALS['bound']}x of the lower bound (geometric mean): "
            f"{x(over_bound)}, {verdict(over_bound <= GOALS['bound'])};",
            f"- actual makespan within {GOALS['plan']:.0%} of planned (worst trace, median "
            f"run): {worst_plan:.1%} off, {verdict(worst_plan <= GOALS['plan'])}.", "",
            *reachable(shape, med, bound),
            f"The plan models run time only. Over all HEFT runs, a task's median planned run "
            f"time is {task * 1000:.0f} ms, and from launch to result it took a median "
            f"{excess * 1000:.0f} ms longer than planned (Parsl's dispatch and return path, and "
            "waits for the node's worker): that excess, summed along the plan's chains, is "
            "where actual and planned makespans part. It weighs less as tasks get longer.", ""]


def reachable(shape: dict[str, Any], med: dict[str, dict[str, float]],
              bound: dict[str, float]) -> list[str]:
    """What any schedule could reach, from CP-SAT's best schedules and proven bounds."""
    best = {c["trace"]: c["best"] for c in shape["cases"] if "best" in c}
    if set(best) != set(bound):
        return []
    proven = {t: max(bound[t], best[t]["bound"]) for t in bound}
    ceiling = geomean([med["stock"][t] / proven[t] for t in bound])
    found = geomean([best[t]["makespan"] / bound[t] for t in bound])
    planned = geomean([statistics.median(per_trace(shape["runs"]["fork-heft"], t, "planned"))
                       / best[t]["makespan"] for t in bound])
    optimal = [t for t in bound if best[t]["optimal"]]
    return ["What any schedule could reach, from OR-Tools' CP-SAT on the planners' model "
            "(bench/optimal.py):", "",
            f"- No schedule can be shorter than the larger of the lower bound and CP-SAT's "
            f"proven bound, so none can beat stock Parsl's measured makespan here by more than "
            f"{x(ceiling)} (geometric mean); "
            + ("the speed-up goal is out of reach of any schedule on this cluster shape."
               if ceiling < GOALS["speedup"] else "the speed-up goal is within reach."),
            f"- The best schedules CP-SAT found are {x(found)} the lower bound (geometric "
            f"mean; proven optimal on {len(optimal)} of {len(bound)} traces"
            + (f": {', '.join(optimal)}" if optimal else "") + "), "
            + ("so the lower bound is loose here and the bound goal is beyond any schedule "
               "known for these traces."
               if found > GOALS["bound"] else "so the bound goal is reachable."),
            f"- HEFT's planned makespans are {x(planned)} CP-SAT's best (geometric mean; above "
            "1 is what a better planner could still win).", ""]


def losses(shape: dict[str, Any], med: dict[str, dict[str, float]]) -> list[str]:
    """Every trace where HEFT's median makespan is not shorter than stock's, with the
    figures that say why."""
    if "fork-heft" not in med:
        return []
    heft_runs = shape["runs"]["fork-heft"]
    lost = [t for t in med["stock"] if med["fork-heft"][t] >= med["stock"][t]]
    if not lost:
        return ["HEFT's median makespan is shorter than stock Parsl's on every trace here.", ""]
    out = ["Where HEFT does not beat stock Parsl (median against median):", ""]
    for t in lost:
        planned = statistics.median(per_trace(heft_runs, t, "planned"))
        launched = statistics.median(per_trace(heft_runs, t, "actual_from_launch"))
        overhead = statistics.median(per_trace(heft_runs, t, lambda r: r["submit_s"]
                                               + r["execute_s"]))
        stock = med["stock"][t]
        if planned >= stock:
            why = (f"the plan itself is no shorter: HEFT planned {planned:.2f} s, and stock "
                   f"Parsl's dynamic placement finished in {stock:.2f} s")
        else:
            why = (f"the plan was shorter ({planned:.2f} s) but the run from the plan's launch "
                   f"took {launched:.2f} s ({launched / planned - 1:+.0%}), plus "
                   f"{overhead:.2f} s of deferred submission and planning before it")
        out.append(f"- **{t}**: HEFT {med['fork-heft'][t]:.2f} s, stock {stock:.2f} s: {why}.")
    out += ["", "Why: the plan is static and its model knows only the task costs. Each task "
            "also pays Parsl's dispatch latency (DFK, interchange, worker, result back), which "
            "the plan does not count; on a pinned node that latency delays every later task "
            "of the node's planned sequence, while stock HTEx gives the next ready task to "
            "whichever worker is free at that moment. When a workflow is wide (total work over "
            "all slots dominates the bound) such a greedy policy is already near the bound, "
            "so a plan has little to gain and its fixed order can lose a little.", ""]
    return out


def plot_makespan(shape: dict[str, Any], med: dict[str, dict[str, float]],
                  bound: dict[str, float]) -> Path:
    traces = list(bound)
    configs = list(med)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(configs)
    for i, config in enumerate(configs):
        runs = shape["runs"][config]
        ratios = [[v / bound[t] for v in per_trace(runs, t, "makespan")] for t in traces]
        centre = [statistics.median(r) for r in ratios]
        errors = [[c - min(r) for c, r in zip(centre, ratios, strict=True)],
                  [max(r) - c for c, r in zip(centre, ratios, strict=True)]]
        ax.bar([j + i * width for j in range(len(traces))], centre, width, yerr=errors,
               capsize=2, label=LABELS[config])
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="lower bound")
    ax.set_xticks([j + width * (len(configs) - 1) / 2 for j in range(len(traces))], traces)
    ax.set_ylabel("makespan / lower bound")
    ax.set_title(f"Real execution, {shape['slots']} slot(s) per node (median, range)")
    ax.legend(fontsize=8)
    return save(fig, f"bench_makespan_{shape['slots']}slot.png")


# -- overhead --------------------------------------------------------------------------------

def overhead_section(makespan: dict[str, Any] | None, throughput: dict[str, Any] | None
                     ) -> list[str]:
    out = ["## 2. Overhead", ""]
    if makespan is not None:
        out += ["Deferred submission plus `dfk.execute()` (planning and launching), as a "
                "fraction of the whole makespan (median over runs):", ""]
        rows = []
        for shape in makespan["shapes"]:
            for k in (k for k in PLANNED if k in shape["runs"]):
                for c in shape["cases"]:
                    runs = per_trace(shape["runs"][k], c["trace"], lambda r: r)
                    submit = statistics.median(r["submit_s"] for r in runs)
                    execute = statistics.median(r["execute_s"] for r in runs)
                    fraction = [(r["submit_s"] + r["execute_s"]) / r["makespan"] for r in runs]
                    rows.append([shape["slots"], LABELS[k], c["trace"], c["tasks"],
                                 f"{submit * 1000:.0f}", f"{execute * 1000:.0f}",
                                 spread([f * 100 for f in fraction], "{:.1f}%")])
        out += table(["slots", "configuration", "trace", "tasks", "submit (ms)",
                      "execute() (ms)", "fraction of makespan"], rows)
    if throughput is not None:
        base = throughput["summary"]["stock"]["median"]
        out += [f"Interchange throughput (issue 3): {throughput['tasks']} no-op tasks on "
                f"{throughput['pools']} pools, {throughput['repeats']} interpreter(s) x "
                f"{throughput['batches']} batches per configuration; tasks per second:", ""]
        out += table(["configuration", "tasks/s", "ratio to stock"],
                     [[name, spread(values, "{:.0f}"),
                       x(statistics.median(values) / base)]
                      for name, values in throughput["runs"].items()])
        pinned = throughput["summary"]["fork pinned"]["median"] / base
        out += [f"Goal: pinned at least {throughput['goal']:.0%} of stock: {pinned:.0%}, "
                f"{'met' if pinned >= throughput['goal'] else '**not met**'}.", ""]
    return out


# -- scheduler cost ----------------------------------------------------------------------------

def scheduler_section(data: dict[str, Any]) -> list[str]:
    out = ["## 3. Scheduler cost", "",
           "Random layered DAGs (`bench/scheduler_cost.py`) on a heterogeneous, fully connected "
           f"network; CPU seconds of planning. Native HEFT: median (range) of {data['repeats']} "
           f"runs; SAGA: one run, up to {data['saga_task_limit']} tasks. Ratios are SAGA over "
           "native; *same* says whether native HEFT and SAGA's HEFT give the same makespan.", ""]
    rows = []
    for r in data["rows"]:
        saga = [(r[k], x(r[k] / r["native_s"])) if r[k] is not None else ("-", "-")
                for k in ("saga_heft_s", "saga_cpop_s")]
        same = ("-" if r["saga_heft_makespan"] is None
                else math.isclose(r["native_makespan"], r["saga_heft_makespan"], rel_tol=1e-9))
        rows.append([r["tasks"], r["nodes"], r["edges"], spread(r["native_runs"], "{:.3f}"),
                     *(f"{s:.3f}" if isinstance(s, float) else s for s, _ in saga[:1]),
                     saga[0][1], *(f"{s:.3f}" if isinstance(s, float) else s
                                   for s, _ in saga[1:]), saga[1][1], same])
    out += table(["tasks", "nodes", "edges", "native HEFT (s)", "SAGA HEFT (s)", "ratio",
                  "SAGA CPOP (s)", "ratio", "same"], rows)
    largest = max(data["rows"], key=lambda r: (r["tasks"], r["nodes"]))
    out += [f"Goal: 10,000 tasks on 64 nodes planned in under 1 s. Largest case here, "
            f"{largest['tasks']} tasks on {largest['nodes']} nodes: {largest['native_s']:.3f} s "
            f"CPU, {'met' if largest['native_s'] < 1 else '**not met**'}.", "",
            f"![planning CPU time against size]({plot_scheduler(data).name})", ""]
    return out


def plot_scheduler(data: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for nodes in sorted({r["nodes"] for r in data["rows"]}):
        rows = [r for r in data["rows"] if r["nodes"] == nodes]
        ax.plot([r["tasks"] for r in rows], [r["native_s"] for r in rows], "o-",
                label=f"native HEFT, {nodes} nodes")
        for key, name in (("saga_heft_s", "SAGA HEFT"), ("saga_cpop_s", "SAGA CPOP")):
            saga = [r for r in rows if r[key] is not None]
            if saga:
                ax.plot([r["tasks"] for r in saga], [r[key] for r in saga], "x--",
                        label=f"{name}, {nodes} nodes")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tasks")
    ax.set_ylabel("CPU seconds")
    ax.set_title("Planning cost")
    ax.legend(fontsize=7)
    return save(fig, "bench_scheduler_cost.png")


# -- generated instances ---------------------------------------------------------------------

def generated_section(data: dict[str, Any]) -> list[str]:
    speeds = ", ".join(f"{s:g}" for s in data["speeds"])
    out = ["## 4. Larger instances: WfCommons recipes and random DAGs (planned)", "",
           f"Instances of the traces' six families generated with the `wfcommons` package's "
           f"recipes, and random layered DAGs, planned on the model of the cluster (speeds "
           f"{speeds}, {data['slots']} slots per node, no data transfer). No real execution at "
           f"these sizes: *stock (sim.)* simulates stock HTEx's policy (each ready task to a "
           f"random free worker, first ready first; median of {data['simulation_seeds']} seeds) "
           "and is a model, not a measurement. Ratios are planned makespan over the lower bound; "
           "CPU seconds for planning.", ""]
    rows = []
    for r in data["rows"]:
        gap = relative_gap(r["heft"], r["saga_heft"])
        same = "yes" if gap <= SAME else f"no, {gap:.1e} apart; {tie_free_verdict(r)}"
        rows.append([r["instance"], r["tasks"], r["edges"], x(r["heft"] / r["lower_bound"]),
                     x(r["cpop"] / r["lower_bound"]), x(r["stock_sim"] / r["lower_bound"]),
                     x(r["stock_sim"] / r["heft"]), f"{r['native_heft_s']:.3f}",
                     f"{r['saga_heft_s']:.2f}", f"{r['saga_cpop_s']:.2f}", same])
    out += table(["instance", "tasks", "edges", "HEFT / bound", "CPOP / bound",
                  "stock (sim.) / bound", "stock (sim.) / HEFT", "native HEFT (s)",
                  "SAGA HEFT (s)", "SAGA CPOP (s)", "same makespan"], rows)
    differ = [r for r in data["rows"] if "tie_free_heft" in r]
    agree = [r for r in differ if tie_free_verdict(r).startswith("equal")]
    if differ:
        out += [f"Where *same makespan* says no ({len(differ)} of {len(data['rows'])}), the "
                "instance has ties (two nodes of equal speed, the slots of one node, tasks of "
                "equal cost) that leave HEFT a free choice, which the two implementations make "
                "differently. Each such instance was planned again with every cost and slot "
                "speed nudged apart by under 1e-6 (bench/generated.py's `without_ties`): there "
                f"native and SAGA HEFT agree on {len(agree)} of {len(differ)}"
                + (", so the differences are tie-breaks." if len(agree) == len(differ)
                   else ", and the rest is a real disagreement (the step fails)."), ""]
    out += [f"![planned makespan over the lower bound]({plot_generated(data).name})", ""]
    return out


def tie_free_verdict(row: dict[str, Any]) -> str:
    if "tie_free_heft" not in row:
        return "not re-planned without ties"
    gap = relative_gap(row["tie_free_heft"], row["tie_free_saga_heft"])
    return "equal without ties" if gap <= SAME else f"**{gap:.1e} apart without ties**"


SAME = SAME_MAKESPAN_RTOL


def relative_gap(native: float, saga: float) -> float:
    return abs(native - saga) / saga


def plot_generated(data: dict[str, Any]) -> Path:
    rows = data["rows"]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.27
    for i, (key, name) in enumerate((("heft", "HEFT"), ("cpop", "CPOP"),
                                     ("stock_sim", "stock (sim.)"))):
        ax.bar([j + i * width for j in range(len(rows))],
               [r[key] / r["lower_bound"] for r in rows], width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="lower bound")
    ax.set_xticks([j + width for j in range(len(rows))], [r["instance"] for r in rows],
                  rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("planned makespan / lower bound")
    ax.legend(fontsize=8)
    return save(fig, "bench_generated.png")


# -- lambda_hat ----------------------------------------------------------------------------

def routing_section(data: dict[str, Any]) -> list[str]:
    routed, x64 = (task_medians(data["task_seconds"][mode]) for mode in ("routed", "all_x64"))
    tasks = [[name, f"{routed[name]:.1f}", f"{x64[name]:.1f}", x(x64[name] / routed[name])]
             for name in routed]
    return ["## 5. lambda_hat: per-dtype routing against the all-x64 workaround", "",
            f"`bench/lambda_hat_routing.py` ({Path(data['config']).name}, {data['repeats']} "
            "repeat(s)): wall seconds of the whole LLC workflow.", "",
            *table(["mode", "wall (s)"],
                   [[m, spread(v, "{:.1f}")] for m, v in data["wall_seconds"].items()]),
            f"all-x64 / routed: {x(data['ratio_all_x64_over_routed'])}.", "",
            "Seconds per task (median over repeats). For the float32 samplers (SGLD, VI), "
            "all-x64 / routed is what float64 costs them at this config's model sizes. The "
            "wall time also depends on how the workers are split: routed runs one worker per "
            "precision (htex32, htex64), so the long float64 samplers queue on one worker; "
            "all-x64 runs both workers on one executor.", "",
            *table(["sampler/target", "routed (s)", "all-x64 (s)", "all-x64 / routed"], tasks),
            *precision_noise(data, routed, x64), ""]


def precision_noise(data: dict[str, Any], routed: dict[str, float],
                    x64: dict[str, float]) -> list[str]:
    """Float64 samplers do the same work in both modes: their ratios are the noise floor."""
    config = Path(data["config"])
    if not config.exists():
        return []
    dtypes = {s["name"]: s["dtype"] for s in yaml.safe_load(config.read_text())["samplers"]}
    ratios = {dtype: [x64[n] / routed[n] for n in routed if dtypes.get(n.split("/")[0]) == dtype]
              for dtype in ("float32", "float64")}
    if not all(ratios.values()):
        return []
    low32, high32 = min(ratios["float32"]), max(ratios["float32"])
    low64, high64 = min(ratios["float64"]), max(ratios["float64"])
    verdict = ("so float64 cost the float32 samplers more than this noise"
               if low32 > high64 else
               "so at these model sizes this run cannot tell float64's cost from noise")
    return ["", f"The float64 samplers run the same code in float64 in both modes, so their "
            f"ratios ({low64:.2f}x to {high64:.2f}x) are this machine's run-to-run and "
            f"contention noise; the float32 samplers' ratios are {low32:.2f}x to "
            f"{high32:.2f}x, {verdict}."]


def task_medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


# -- SAGA series ---------------------------------------------------------------------------

def saga_speed_section(data: dict[str, Any]) -> list[str]:
    rows = [[r["tasks"], r["nodes"], r["edges"], f"{r['upstream_cpu']:.2f}",
             f"{r['fork_cpu']:.2f}", x(r["upstream_cpu"] / r["fork_cpu"]), r["same_makespan"]]
            for r in data["rows"]]
    return ["## 6. SAGA's own HEFT: the pinned release against our SAGA series", "",
            "`bench/saga_heft_speed.py`: SAGA's `HeftScheduler` on random DAGs over a fully "
            "connected heterogeneous network, CPU seconds of one plan, anrg-saga 2.1.0 "
            "(with only the packaging patch) and with the whole series "
            "(`patches/saga/`), each in its own interpreter in this run. *same* says whether "
            "both plans have the same makespan.", "",
            *table(["tasks", "nodes", "edges", "upstream (s)", "series (s)", "speed-up", "same"],
                   rows), ""]


# -- submit cost ---------------------------------------------------------------------------

def submit_cost_section(data: dict[str, Any]) -> list[str]:
    stats = data["stats"]
    rows = [[mode, f"{s['median']:.0f}", f"{s['min']:.0f}-{s['max']:.0f}", s["n"]]
            for mode, s in stats.items()]
    return ["## 7. Submit cost per task: planned against unplanned", "",
            f"`bench/submit_cost.py`: {data['tasks']} no-op tasks on one HTEx pool, "
            f"{data['repeats']} rounds, both modes in each round in alternating order; "
            "microseconds per task from the first submit until every task has reached the "
            "executor. Planned includes building the graph, the native HEFT plan and setting "
            "each task's node and priority; the app function reaches the executor "
            "unwrapped in both modes.", "",
            *table(["mode", "median (us/task)", "range", "rounds"], rows),
            f"Planned / unplanned (medians): **{x(data['ratio'])}**.", ""]


# -- makespan on Slurm ----------------------------------------------------------------------

SLURM_TITLE = "## 8. Makespan on Slurm: stock Parsl and the fork through the same SlurmProvider"


def slurm_section(data: dict[str, Any]) -> list[str]:
    if "skipped" in data:
        return [SLURM_TITLE, "", f"Not measured: `bench/slurm_makespan.py` was skipped on this "
                f"machine: {data['skipped']}.", ""]
    runs = data["runs"]
    by_config = {k: [r for r in runs if r["config"] == k] for k in data["configs"]}
    stock, fork = by_config["stock"], by_config["fork-heft"]
    on_plan = sum(r["off_plan"] == 0 for r in fork)
    names = ", ".join(n["name"] for n in data["nodes"])
    speeds = ", ".join(f"{n['speed']:g}" for n in data["nodes"])
    plan_nodes = {node: speed for r in fork for node, speed in r["plan_nodes"].items()}

    def seconds(rs: list[dict[str, Any]], key: str) -> str:
        return spread([r[key] for r in rs], "{:.1f}")

    return [SLURM_TITLE, "",
            "`bench/slurm_makespan.py`: one real Slurm cluster on this machine "
            "(`src/parsl_saga/slurm_cluster.py`: slurmctld, one slurmd per node in its own "
            f"network namespace; nodes {names} at speeds {speeds}, as node feature `speed_X` and "
            "`PARSL_NODE_SPEED` in every job) for the whole step. Each run is a fresh "
            "interpreter and DFK whose HighThroughputExecutor gets one exclusive node per "
            "block from Parsl's own `SlurmProvider` on the cluster's partition, as many blocks "
            "as nodes; both configurations use the same settings. *Stock Parsl* is the pinned "
            "upstream release (`.cache/baseline`); *fork + HEFT* plans the whole trace with "
            '`dag_scheduler="heft"` and each task\'s exact cost as its hint, on the nodes '
            f"`SlurmProvider.get_graph_nodes()` reads from `sinfo`. {run_order(runs)}; "
            "timing starts once every block's pool "
            "has registered and every worker has run a warm-up task, so block start-up is not "
            "in the makespan (first submit to last result, as in section 1). Figures: median "
            "(range) in seconds.", "",
            *table(["trace", "tasks", "scale", "lower bound", "cluster", "runs each",
                    "stock Parsl", "fork + HEFT", "stock / fork", "fork runs all on plan"],
                   [slurm_row(data)]),
            "The plan named the Slurm nodes, with the speeds `sinfo` gave: "
            + ", ".join(f"{node} {speed:g}" for node, speed in sorted(plan_nodes.items()))
            + f". In {on_plan} of {len(fork)} fork runs every task ran on its planned node "
            "(each task returns its pool's `PARSL_NODE_NAME`, Slurm's `SLURMD_NODENAME`)"
            + ("." if on_plan == len(fork)
               else f"; tasks off plan per run: {[r['off_plan'] for r in fork]}.")
            + f" HEFT's planned makespan: {spread([r['planned'] for r in fork])} s; measured "
            f"from the plan's launch: {spread([r['actual_from_launch'] for r in fork])} s.", "",
            "Not in the makespan: block start-up, from `parsl.load` until every block's pool "
            f"had registered: {seconds(stock, 'startup_s')} s for stock Parsl, "
            f"{seconds(fork, 'startup_s')} s for the fork.", ""]


def run_order(runs: list[dict[str, Any]]) -> str:
    """How the runs followed each other: alternating configurations, or the order itself."""
    order = [r["config"] for r in runs]
    if all(a != b for a, b in itertools.pairwise(order)):
        return f"The {len(order)} runs alternate, {LABELS[order[0]]} first"
    return f"Runs in this order: {', '.join(order)}"


def slurm_row(data: dict[str, Any]) -> list[object]:
    """The Slurm table's row: the trace, the cluster's shape, both configurations'
    makespans (median and range), their ratio (of medians), and the fork's runs in which
    every task ran on its planned node."""
    case = data["case"]
    makespans = {k: [r["makespan"] for r in data["runs"] if r["config"] == k]
                 for k in ("stock", "fork-heft")}
    fork = [r for r in data["runs"] if r["config"] == "fork-heft"]
    speeds = ", ".join(f"{n['speed']:g}" for n in data["nodes"])
    workers = "/".join(str(w) for w in sorted({n["workers"] for n in data["nodes"]}))
    ratio = statistics.median(makespans["stock"]) / statistics.median(makespans["fork-heft"])
    return [case["trace"], case["tasks"], f"{case['scale']:.4g}", f"{case['lower_bound']:.2f}",
            f"{len(data['nodes'])} nodes, speeds {speeds}, {workers} worker(s) each",
            "/".join(str(len(v)) for v in makespans.values()),
            spread(makespans["stock"]), spread(makespans["fork-heft"]), x(ratio),
            f"{sum(r['off_plan'] == 0 for r in fork)} of {len(fork)}"]


# -- adaptive against static plan execution (issue 16) ---------------------------------------

ADAPTIVE_ROWS = {"exact": "exact cost hints", "sigma0.3": "hints x log-normal noise, σ = 0.3",
                 "sigma0.6": "hints x log-normal noise, σ = 0.6",
                 "sigma1.0": "hints x log-normal noise, σ = 1.0",
                 "none": "no estimates (one app per program, no history)",
                 "second": "second run, from the first run's history"}
# Issue 16's targets: geometric mean over the traces of stock's median makespan over
# adaptive's, per row (and, for exact hints, adaptive within 3% of static).
ADAPTIVE_TARGETS = {"exact": 1.3, "sigma0.6": 1.2, "sigma1.0": 1.1, "none": 1.0, "second": 1.2}


def adaptive_makespans(data: dict[str, Any], config: str, row: str, trace: str) -> list[float]:
    return [r["makespan"] for r in data["runs"][config]
            if r["trace"] == trace and r["row"] == ("stock" if config == "stock" else row)]


def adaptive_speedups(data: dict[str, Any], row: str) -> dict[str, dict[str, float]]:
    """Per trace, stock's median makespan over static's and over adaptive's."""
    out: dict[str, dict[str, float]] = {}
    for case in data["cases"]:
        stock = statistics.median(adaptive_makespans(data, "stock", row, case["trace"]))
        out[case["trace"]] = {mode: stock / statistics.median(
            adaptive_makespans(data, mode, row, case["trace"])) for mode in ("static", "adaptive")}
    return out


def adaptive_section(data: dict[str, Any]) -> list[str]:
    st = data["settings"]
    counts = {c: len(data["runs"][c]) for c in ("stock", "static", "adaptive")}
    out = ["## Adaptive plan execution against static and stock (issue 16)", "",
           f"`bench/adaptive.py`: the six shared traces on the local cluster (speeds "
           f"{', '.join(f'{v:g}' for v in st['speeds'])}, {st['slots']} worker slots per node), "
           f"each scaled to a lower bound of {st['target']:g} s. Three clusters: stock Parsl, "
           "the fork with HEFT and `plan_execution=\"static\"` (every task on its planned "
           "node), and the fork with the default `\"adaptive\"` (an idle node takes ready "
           "work planned elsewhere when by the estimates it finishes sooner there; estimates "
           "learn per app as tasks finish; a lost node's tasks move on at once). "
           f"{st['rounds']} rounds of every trace and row per fork cluster; stock ran "
           f"{counts['stock'] // len(data['cases'])} rounds per trace in the same time. "
           + ("The three clusters ran at the same time on this machine, each under the "
              "others' load. " if st["parallel"] else "")
           + "Speed-up is stock's median makespan over the configuration's (higher is "
           "better), per trace; the table gives the geometric mean over the traces.", ""]
    rows, verdicts, missed = [], [], []
    for row, label in ADAPTIVE_ROWS.items():
        per = adaptive_speedups(data, row)
        static = geomean([v["static"] for v in per.values()])
        adaptive = geomean([v["adaptive"] for v in per.values()])
        worst = min(per, key=lambda t: per[t]["adaptive"])
        runs = [r for r in data["runs"]["adaptive"] if r["row"] == row]
        moved = " / ".join(f"{statistics.median(r['moves'].get(reason, 0) for r in runs):g}"
                           for reason in ("stolen", "replanned"))
        target = ADAPTIVE_TARGETS.get(row)
        rows.append([label, x(static), x(adaptive), x(adaptive / static),
                     f"{worst} {x(per[worst]['adaptive'])}", moved,
                     "-" if target is None else f"≥ {target:g}x"])
        if row == "none":
            slower = [t for t, v in per.items() if v["adaptive"] < 1]
            verdicts.append(f"- no estimates, never slower than stock: "
                            f"{'**met**' if not slower else '**not met**'} "
                            f"(geometric mean {x(adaptive)}"
                            + (f"; slower on {', '.join(slower)}" if slower else "") + ")")
        elif target is not None:
            verdicts.append(f"- {label}: adaptive ≥ {target:g}x stock: "
                            f"{'**met**' if adaptive >= target else '**not met**'} ({x(adaptive)})")
            if adaptive < target:
                below = sorted((t for t in per if per[t]["adaptive"] < target),
                               key=lambda t: per[t]["adaptive"])
                missed.append(f"- {label}: the static plan reaches {x(static)} of stock and "
                              f"adaptive execution adds {x(adaptive / static)} to it; below the "
                              "target on " + ", ".join(f"{t} ({x(per[t]['adaptive'])}, static "
                                                       f"{x(per[t]['static'])})" for t in below))
        if row == "exact":
            verdicts.append(f"- exact hints, adaptive within 3% of static: "
                            f"{'**met**' if adaptive / static >= 0.97 else '**not met**'} "
                            f"(adaptive / static {adaptive / static:.3f})")
    out += table(["estimates", "static / stock", "adaptive / stock", "adaptive / static",
                  "adaptive's worst trace", "moves: stolen / re-planned (median per run)",
                  "target"], rows)
    out += ["Targets (geometric mean over the traces):", "", *verdicts, ""]
    if missed:
        out += ["Where a target is not met, adaptive execution corrects a plan made from wrong "
                "estimates only where a node runs out of its own ready work (or a node joins): "
                "the plan's choice of node and its order for every other task still come from "
                "the estimates. Re-planning the queued tasks whenever a task ends far from its "
                "estimate was measured too and made the history and no-estimate rows slower "
                "than static (docs/upstream.md, patch 35). What the rows show:", "",
                *missed, ""]
    out += ["Per trace: median makespan in seconds (min-max).", ""]
    trace_rows = []
    for case in data["cases"]:
        for row in ADAPTIVE_ROWS:
            values = {c: adaptive_makespans(data, c, row, case["trace"])
                      for c in ("stock", "static", "adaptive")}
            trace_rows.append([case["trace"], row, *(spread(values[c]) for c in values),
                               x(statistics.median(values["stock"])
                                 / statistics.median(values["adaptive"]))])
    out += table(["trace", "estimates", "stock", "static", "adaptive", "adaptive / stock"],
                 trace_rows)
    out += adaptive_loss_section(data)
    return out


def adaptive_loss_section(data: dict[str, Any]) -> list[str]:
    st = data["settings"]
    losses = [r for r in data["runs"]["adaptive"] if r["row"] == "loss"]
    if not losses:
        return []
    rows = []
    for r in losses:
        undisturbed = [u["makespan"] for u in data["runs"]["adaptive"]
                       if u["trace"] == r["trace"] and u["row"] == "exact" and u["round"] == 0]

        def seconds(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        rows.append([r["trace"], f"{r['kill_s']:.2f}", r["moved_at_loss"], seconds(r["detect_s"]),
                     seconds(r["all_started_s"]), f"{undisturbed[0]:.2f}", f"{r['makespan']:.2f}",
                     f"{r['makespan'] / undisturbed[0]:.2f}", r["ran_on_lost_node_after_kill"]])
    return ["### Node loss", "",
            f"In the adaptive cluster, with exact hints, the pool of {st['lost_node']} (the "
            f"fastest node) is SIGKILLed {st['kill_at']:g} s after the plan's launch (soft "
            "policy, default heartbeat threshold 120 s and grace period 120 s), once per "
            "trace. *Moved* counts that node's tasks that were queued or running there at the "
            "kill; *detected* is the time from the kill until the interchange moved the first "
            "of them (its closed connection), *all started* until the last of them started "
            "on another node (the tasks' own clocks), which includes waiting for a free worker "
            "on the remaining nodes. The undisturbed run is the same round's exact-hint run.",
            "",
            *table(["trace", "kill at (s)", "moved", "detected (s)", "all started (s)",
                    "undisturbed (s)", "with loss (s)", "ratio", "ran on the lost node after"],
                   rows)]


# -- the report ------------------------------------------------------------------------------

def replan_cost_section(data: dict[str, Any]) -> list[str]:
    rows = [[r["tasks"], r["nodes"], r["workers"],
             spread([t * 1e3 for t in r["replan_s"]], "{:.1f}"),
             spread([t * 1e3 for t in r["heft_s"]], "{:.1f}"), x(r["ratio"])]
            for r in data["rows"]]
    return ["## Re-plan cost: the interchange's re-plan of its queued tasks against HEFT", "",
            "`bench/replan_cost.py`: CPU time of `WorkStealing.replan_queued` (each queued "
            "task, in priority order, to the live node where it is estimated to finish "
            "first), against the native `heft()` planning the same independent tasks over "
            f"the same workers ({data['workers_per_node']} per node), {data['repeats']} runs "
            "each, median (range). The interchange re-plans once per node that joins.", "",
            *table(["queued tasks", "nodes", "workers", "re-plan (ms)", "HEFT (ms)",
                    "HEFT / re-plan"], rows)]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "makespan": makespan_section, "adaptive": adaptive_section,
    "scheduler_cost": scheduler_section,
    "generated": generated_section, "lambda_hat_routing": routing_section,
    "saga_heft_speed": saga_speed_section, "submit_cost": submit_cost_section,
    "slurm_makespan": slurm_section, "replan_cost": replan_cost_section}


def header(run: dict[str, Any]) -> list[str]:
    m = run["machine"]
    steps = [[s["name"], s.get("started", "-"), f"{s['seconds']:.0f}",
              "ok" if s["ok"] else "**failed**"] for s in run["steps"]]
    rerun = [s["name"] for s in run["steps"] if s.get("rerun")]
    return ["# Benchmarks", "",
            f"Written by `make bench{' QUICK=1' if run['mode'] == 'quick' else ''}` "
            f"({run['mode']} mode) on {run['started']}, in {run['seconds'] / 60:.1f} minutes. "
            "Every figure comes from the result files of that run (`bench/results/*.json`, "
            "rendered by `bench/report.py`); ratios compare configurations measured in the "
            "same run"
            + (f", except that {', '.join(rerun)} ran again later on its own "
               "(`bench/run.py --only`, start times below)." if rerun else "."), "",
            "Machine:", "",
            *table(["", ""], [["platform", m["platform"]], ["CPU", m["cpu"]],
                              ["cores", m["cpus"]], ["memory", m["memory"]],
                              ["Python", m["python"]],
                              ["load average at start (1, 5, 15 min)",
                               ", ".join(map(str, m["load_average"]))]]),
            "Steps:", "", *table(["step", "started", "seconds", "status"], steps)]


def render() -> str:
    run = json.loads((RESULTS / "run.json").read_text())
    ok = {s["name"] for s in run["steps"] if s["ok"]}
    DOCS.mkdir(exist_ok=True)
    lines = header(run)
    if run["mode"] == "quick":
        lines += ["Quick mode: short runs (lower bound of about a second per trace, where "
                  "Parsl's per-task latency weighs more than in the full run), one cluster "
                  "per configuration, fewer sizes. Use `make bench` for the figures to quote.",
                  ""]
    present = {name: load(name) for name in (*SECTIONS, "interchange_throughput")
               if name in ok}
    if "makespan" in present:
        lines += makespan_section(present["makespan"])
    if "makespan" in present or "interchange_throughput" in present:
        lines += overhead_section(present.get("makespan"), present.get("interchange_throughput"))
    for name in ("adaptive", "replan_cost", "scheduler_cost", "generated", "lambda_hat_routing",
                 "saga_heft_speed", "submit_cost", "slurm_makespan"):
        if name in present:
            lines += SECTIONS[name](present[name])
    missing = [s["name"] for s in run["steps"] if not s["ok"]]
    if missing:
        lines += ["## Not reported", "", f"These steps failed in this run: {', '.join(missing)}.",
                  ""]
    return "\n".join(lines)


def main() -> int:
    REPORT.write_text(render())
    print(f"wrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
