"""The benchmarks' own arithmetic: the lower bound, the stock-policy simulation and the
report's statistics (bench/). No timings are asserted."""

from __future__ import annotations

import math

import pytest
from common import Cluster, critical_path, lower_bound
from generated import simulate_stock
from report import geomean, spread

# a -> b -> d and a -> c -> d: the chain through b is the longer one.
DIAMOND = {"a": (1.0, []), "b": (4.0, ["a"]), "c": (2.0, ["a"]), "d": (1.0, ["b", "c"])}


def test_critical_path_takes_the_longest_chain() -> None:
    assert critical_path(DIAMOND) == 6.0


def test_lower_bound_is_the_larger_of_the_two_bounds() -> None:
    # Critical path on the fastest node: 6 / 4; all work over all slots: 8 / (2 * 8).
    assert lower_bound(DIAMOND, Cluster((1.0, 1.0, 2.0, 4.0), slots=2)) == 1.5
    # One slow node: the work bound, 8 / 1, is the larger.
    assert lower_bound(DIAMOND, Cluster((1.0,), slots=1)) == 8.0


@pytest.mark.parametrize("seed", range(5))
def test_simulated_stock_policy_is_never_below_the_bound(seed: int) -> None:
    cluster = Cluster((1.0, 1.0, 2.0, 4.0), slots=1)
    makespan = simulate_stock(DIAMOND, cluster, seed)
    assert makespan >= lower_bound(DIAMOND, cluster)
    # On one node at speed 1 the tasks run back to back.
    assert simulate_stock(DIAMOND, Cluster((1.0,), slots=1), seed) == 8.0


def test_report_statistics() -> None:
    assert math.isclose(geomean([2.0, 8.0]), 4.0)
    assert spread([1.0, 3.0, 2.0]) == "2.00 (1.00-3.00)"
    assert spread([1.5]) == "1.50"


def test_best_schedule_reaches_and_proves_the_optimum() -> None:
    from optimal import best_schedule

    # The chain a-b-d on the speed-4 node takes 1.5, c fits beside it on another node:
    # the lower bound (critical path on the fastest node) is reached, and CP-SAT proves it.
    cluster = Cluster((1.0, 1.0, 2.0, 4.0), slots=2)
    best = best_schedule(DIAMOND, cluster, time_limit=10.0, workers=1)
    assert best.optimal
    assert best.makespan == pytest.approx(1.5, abs=1e-3)
    assert best.bound == pytest.approx(best.makespan)


def test_best_schedule_beats_a_greedy_choice() -> None:
    from optimal import best_schedule, heft_plan

    # Two independent tasks on speeds 1 and 2: the long one belongs on the fast node.
    graph = {"short": (2.0, []), "long": (4.0, [])}
    cluster = Cluster((1.0, 2.0), slots=1)
    best = best_schedule(graph, cluster, time_limit=10.0, workers=1)
    assert best.optimal and best.makespan == pytest.approx(2.0)
    assert heft_plan(graph, cluster)["long"] == (1, 0.0)


def test_without_ties_nudges_every_cost_and_speed_apart() -> None:
    import numpy as np
    from generated import as_instance, without_ties

    graph = {"a": (1.0, []), "b": (1.0, ["a"]), "c": (1.0, ["a"])}
    instance = as_instance(graph, Cluster((1.0, 1.0), slots=2))
    nudged = without_ties(instance, seed=0)
    assert len(set(nudged.costs)) == len(nudged.costs)
    assert len(set(nudged.speeds)) == len(nudged.speeds)
    assert np.allclose(nudged.costs, instance.costs, rtol=1e-6, atol=0)
    assert np.allclose(nudged.speeds, instance.speeds, rtol=1e-6, atol=0)
    assert nudged.edges == instance.edges


def test_slurm_runs_take_turns() -> None:
    from slurm_makespan import alternating

    assert alternating(("stock", "fork-heft"), 3) == ["stock", "fork-heft"] * 3
    assert alternating(("stock", "fork-heft"), 0) == []


def slurm_result(stock: list[float], fork: list[float], off_plan: list[int]) -> dict:
    nodes = [{"name": f"node-{c}", "workers": 2, "speed": s}
             for c, s in zip("abcd", (1.0, 1.0, 2.0, 4.0), strict=True)]
    runs = [{"config": "stock", "makespan": m} for m in stock]
    runs += [{"config": "fork-heft", "makespan": m, "off_plan": o}
             for m, o in zip(fork, off_plan, strict=True)]
    return {"configs": ["stock", "fork-heft"], "nodes": nodes, "runs": runs,
            "case": {"trace": "epigenomics", "tasks": 41, "scale": 0.445, "lower_bound": 15.0}}


def test_slurm_row_has_medians_ranges_their_ratio_and_the_runs_on_plan() -> None:
    from report import slurm_row

    row = slurm_row(slurm_result([30.0, 20.0, 40.0], [10.0, 12.0, 11.0], [0, 2, 0]))
    assert row == ["epigenomics", 41, "0.445", "15.00",
                   "4 nodes, speeds 1, 1, 2, 4, 2 worker(s) each", "3/3",
                   "30.00 (20.00-40.00)", "11.00 (10.00-12.00)", "2.73x", "2 of 3"]


def test_a_skipped_slurm_step_says_why_and_shows_no_figures() -> None:
    from report import slurm_section

    text = "\n".join(slurm_section({"skipped": "a SlurmCluster needs root; run as root"}))
    assert "skipped on this machine: a SlurmCluster needs root; run as root." in text
    assert "|" not in text


def test_the_report_says_whether_runs_alternated() -> None:
    from report import run_order

    runs = [{"config": c} for c in ("stock", "fork-heft", "stock", "fork-heft")]
    assert run_order(runs) == "The 4 runs alternate, stock Parsl first"
    assert run_order(runs[:1] + runs) == ("Runs in this order: stock, stock, fork-heft, "
                                          "stock, fork-heft")


def test_noisy_hints_are_seeded_and_exact_without_noise() -> None:
    from adaptive import noisy_costs

    case = {"trace": "diamond"}
    assert noisy_costs(case, DIAMOND, "exact", 0) == {n: c for n, (c, _) in DIAMOND.items()}
    noisy = noisy_costs(case, DIAMOND, "sigma1.0", 0)
    assert noisy == noisy_costs(case, DIAMOND, "sigma1.0", 0), "the same hints for every mode"
    assert noisy != noisy_costs(case, DIAMOND, "sigma1.0", 1)
    assert all(v > 0 for v in noisy.values()) and noisy != noisy_costs(case, DIAMOND, "exact", 0)


def adaptive_result(stock: float, static: float, adaptive: float) -> dict:
    """An adaptive.json with one trace, every row at these makespans."""
    from adaptive import ROWS

    def runs(config: str, makespan: float) -> list[dict]:
        rows = ["stock"] if config == "stock" else list(ROWS)
        return [{"trace": "t", "row": row, "round": 0, "makespan": makespan, "moved": 1,
                 "moves": {"replanned": 1}}
                for row in rows]

    return {"settings": {"speeds": [1.0, 4.0], "slots": 2, "target": 15.0, "rounds": 1,
                         "parallel": False, "lost_node": "node-b", "kill_at": 3.0},
            "cases": [{"trace": "t"}],
            "runs": {"stock": runs("stock", stock), "static": runs("static", static),
                     "adaptive": runs("adaptive", adaptive)}}


def test_the_adaptive_report_marks_each_target() -> None:
    from report import adaptive_section

    met = "\n".join(adaptive_section(adaptive_result(stock=15.0, static=10.0, adaptive=10.0)))
    assert "**not met**" not in met and met.count("**met**") == 6
    assert "| 0 / 1 |" in met, "moves by reason: none stolen, one re-planned"
    slow = "\n".join(adaptive_section(adaptive_result(stock=10.0, static=10.0, adaptive=12.0)))
    assert "no estimates, never slower than stock: **not met**" in slow
    assert "adaptive within 3% of static: **not met** (adaptive / static 0.833)" in slow


def test_replan_cost_measures_both_and_the_report_renders_it() -> None:
    from replan_cost import measure
    from report import replan_cost_section

    row = measure(tasks=40, nodes=4, repeats=2)
    assert row["workers"] == 32 and len(row["replan_s"]) == len(row["heft_s"]) == 2
    assert 0 < row["moved"] <= 40, "tasks pinned at random move to faster or freer nodes"
    lines = replan_cost_section({"repeats": 2, "workers_per_node": 8, "rows": [row]})
    assert any(line.startswith("| 40 | 4 | 32 |") for line in lines)
