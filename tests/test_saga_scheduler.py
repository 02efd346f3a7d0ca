"""SAGA's schedulers through parsl-saga's plugin (src/parsl_saga/saga_scheduler.py).

Parsl's core has only its native HEFT; every other scheduler name goes to the plugins of
the entry point group ``parsl.dag_schedulers``, where pyproject.toml registers this one.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import textwrap
from importlib.metadata import entry_points

import pytest
import saga
from parsl.config import Config
from parsl.dataflow.planning import PlanningError, PlanTask, Slot, resolve_dag_scheduler
from parsl.dataflow.planning.heft import NativeHeftScheduler
from parsl.errors import ConfigurationError

from parsl_saga.saga_scheduler import SagaScheduler, saga_scheduler_names, scheduler_for

DIAMOND = [PlanTask(1, 0.5), PlanTask(2, 2.0, (1,)), PlanTask(3, 1.0, (1,)),
           PlanTask(4, 0.5, (2, 3))]
TWO_NODES = [Slot("htex:a#0", "htex", "a"), Slot("htex:b#0", "htex", "b")]


def test_the_plugin_is_registered() -> None:
    [plugin] = [p for p in entry_points(group="parsl.dag_schedulers") if p.name == "saga"]
    assert plugin.load() is scheduler_for


@pytest.mark.parametrize("name", ["cpop", "CPOP", "MinMin", "etf"])
def test_config_takes_saga_names(name: str) -> None:
    scheduler = Config(dag_scheduler=name).planning_scheduler
    assert isinstance(scheduler, SagaScheduler)
    assert scheduler.name == name.lower()


def test_heft_stays_native() -> None:
    assert isinstance(Config(dag_scheduler="heft").planning_scheduler, NativeHeftScheduler)


def test_config_takes_a_saga_instance() -> None:
    scheduler = Config(dag_scheduler=saga.schedulers.MinMinScheduler()).planning_scheduler
    assert isinstance(scheduler, SagaScheduler)


def test_an_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match=r"'nosuchscheduler'.*saga: not one of its"):
        Config(dag_scheduler="nosuchscheduler")
    with pytest.raises(ValueError, match=r"valid names are: .*cpop.*minmin"):
        SagaScheduler("nosuchscheduler")


def test_names_cover_sagas_schedulers() -> None:
    assert {"heft", "cpop", "minmin", "maxmin", "etf"} <= set(saga_scheduler_names())


@pytest.mark.parametrize("name", ["heft", "cpop", "minmin", "etf"])
def test_a_diamond_is_placed_in_order_without_super_tasks(name: str) -> None:
    p = SagaScheduler(name).schedule(DIAMOND, TWO_NODES)
    assert set(p) == {1, 2, 3, 4}
    assert p[2].start >= p[1].end - 1e-9 and p[3].start >= p[1].end - 1e-9
    assert p[4].start >= max(p[2].end, p[3].end) - 1e-9


@pytest.mark.parametrize("name", ["cpop", "heft"])
def test_executor_constraints_are_honoured(name: str) -> None:
    slots = [*TWO_NODES, Slot("tpe:c#0", "tpe", "c", speed=10.0)]
    htex = frozenset(s.name for s in TWO_NODES)
    tasks = [PlanTask(t.task_id, t.cost, t.depends_on, htex) for t in DIAMOND]
    assert all(p.slot in htex for p in SagaScheduler(name).schedule(tasks, slots).values())


def test_a_scheduler_that_ignores_constraints_is_a_clear_error() -> None:
    slots = [*TWO_NODES, Slot("tpe:c#0", "tpe", "c", speed=10.0)]
    tasks = [PlanTask(t.task_id, t.cost, t.depends_on, frozenset({"htex:a#0"})) for t in DIAMOND]
    with pytest.raises(PlanningError, match="use 'heft' or 'cpop'"):
        resolve_dag_scheduler("minmin").schedule(tasks, slots)


def random_plan_inputs(rng: random.Random, num_tasks: int,
                       num_nodes: int) -> tuple[list[PlanTask], list[Slot]]:
    """Tasks with node-local file sizes on some edges; nodes of real-valued speeds and
    bandwidths (so that nothing ties), several slots each."""
    tasks = []
    for t in range(num_tasks):
        parents = tuple(p for p in range(t) if rng.random() < 2.0 / (t + 1))
        sizes = tuple((p, rng.uniform(0.1, 5.0)) for p in parents if rng.random() < 0.5)
        tasks.append(PlanTask(task_id=t, cost=rng.uniform(0.5, 10.0), depends_on=parents,
                              input_sizes=sizes))
    slots = []
    for n in range(num_nodes):
        speed, bandwidth = rng.uniform(0.5, 4.0), rng.uniform(0.5, 5.0)
        slots += [Slot(f"x:n{n}#{i}", "x", f"n{n}", speed, bandwidth)
                  for i in range(rng.randint(1, 3))]
    return tasks, slots


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("reference", ["parametric", "HeftScheduler"])
def test_the_native_heft_plans_as_sagas_heft(seed: int, reference: str) -> None:
    """Same node for every task and same makespan as SAGA's HEFT: its parametric form
    (what the name "heft" builds here) and its own HeftScheduler (given as an instance)."""
    rng = random.Random(1000 + seed)
    tasks, slots = random_plan_inputs(rng, rng.randint(2, 30), rng.randint(1, 4))
    theirs_scheduler = (SagaScheduler("heft") if reference == "parametric"
                        else SagaScheduler(saga.schedulers.HeftScheduler()))
    ours = NativeHeftScheduler().schedule(tasks, slots)
    theirs = theirs_scheduler.schedule(tasks, slots)
    node = {s.name: s.node for s in slots}
    # Slots of one node are interchangeable: compare nodes.
    assert ({t: node[p.slot] for t, p in ours.items()}
            == {t: node[p.slot] for t, p in theirs.items()})
    assert max(p.end for p in ours.values()) == pytest.approx(max(p.end for p in theirs.values()),
                                                            rel=1e-9)


def test_without_saga_heft_plans_and_other_names_say_what_to_install() -> None:
    """In an interpreter where SAGA cannot be imported (as when anrg-saga is not
    installed), the default planner still plans a workflow end to end, and a SAGA name is
    a ConfigurationError naming the package to install."""
    script = textwrap.dedent("""
        import sys
        sys.modules["saga"] = None  # importing it now fails as if it were not installed
        import parsl
        from parsl.config import Config
        from parsl.dataflow.planning import CostModel
        from parsl.errors import ConfigurationError
        from parsl.executors.threads import ThreadPoolExecutor
        try:
            Config(dag_scheduler="cpop")
        except ConfigurationError as e:
            print("cpop:", e)
        config = Config(executors=[ThreadPoolExecutor(label="tpe")], dag_scheduler="heft",
                        cost_model=CostModel(history=False), run_dir=sys.argv[1])
        with parsl.load(config) as dfk:
            inc = parsl.python_app(lambda x: x + 1)
            futures = [inc(i) for i in range(4)]
            plan = dfk.execute()
            print("results:", [f.result() for f in futures], "planned:", len(plan))
        print("saga imported:", "saga.schedulers" in sys.modules)
        """)
    with tempfile.TemporaryDirectory() as run_dir:
        out = subprocess.run([sys.executable, "-P", "-c", script, run_dir], capture_output=True,
                             text=True, timeout=120, check=True).stdout
    assert "pip install 'parsl-saga[saga]'" in out.split("cpop:")[1]
    assert "results: [1, 2, 3, 4] planned: 4" in out
    assert "saga imported: False" in out
