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
