"""SAGA's schedulers (PyPI ``anrg-saga``) behind the fork's DAG scheduler interface.

Parsl's core knows only its native HEFT and the plugin interface: a package registers a
callable under the entry point group ``parsl.dag_schedulers`` (see
``parsl.dataflow.planning.resolve_dag_scheduler``), and Parsl offers it every scheduler
name (or object) it does not know itself. This module is parsl-saga's plugin:
``Config(dag_scheduler="cpop")``, ``"minmin"``, ... or a ``saga.Scheduler`` instance.

SAGA is imported only when one of its schedulers is asked for: it is an optional
dependency (the ``saga`` extra) whose licence forbids commercial use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from parsl.dataflow.planning.base import (
    DAGScheduler,
    Placement,
    PlanningError,
    PlanTask,
    Slot,
    check_placements,
    link_bandwidth,
)

logger = logging.getLogger(__name__)

INSTALL_HINT = "SAGA's schedulers need the package anrg-saga: pip install 'parsl-saga[saga]'"


def scheduler_for(spec: object) -> DAGScheduler | None:
    """The ``parsl.dag_schedulers`` entry point: a :class:`SagaScheduler` for a SAGA
    scheduler name (any case) or instance, None for anything else.

    :raises PlanningError: when SAGA is not installed, saying what to install.
    """
    saga = _import_saga()
    if isinstance(spec, str) and spec.lower() in saga_scheduler_names():
        return SagaScheduler(spec)
    if isinstance(spec, saga.Scheduler):
        return SagaScheduler(spec)
    return None


SUPER_TASKS = ("__super_source__", "__super_sink__")


def _import_saga() -> Any:
    try:
        import saga  # type: ignore[import-untyped]
        import saga.schedulers  # type: ignore[import-untyped]
    except ImportError as e:
        raise PlanningError(INSTALL_HINT) from e
    return saga


def saga_scheduler_names() -> list[str]:
    """The scheduler names :class:`SagaScheduler` accepts (lower case)."""
    saga = _import_saga()
    suffix = "Scheduler"
    names = {n[: -len(suffix)].lower() for n in saga.schedulers.__all__ if n.endswith(suffix)}
    return sorted(names | {"heft", "cpop"})


def _constrained_variant(name: str) -> Any:
    """SAGA 2.1.0's HeftScheduler and CpopScheduler raise ConstraintViolation
    when given node constraints; these parametric equivalents honour them."""
    from saga.schedulers.parametric import (  # type: ignore[import-untyped]
        ParametricScheduler,
    )
    from saga.schedulers.parametric.components import (  # type: ignore[import-untyped]
        CPoPRanking,
        GreedyInsert,
        GreedyInsertCompareFuncs,
        UpwardRanking,
    )
    if name == "heft":
        return ParametricScheduler(UpwardRanking(), GreedyInsert(
            append_only=False, compare=GreedyInsertCompareFuncs.EFT, critical_path=False))
    assert name == "cpop"
    return ParametricScheduler(CPoPRanking(), GreedyInsert(
        append_only=False, compare=GreedyInsertCompareFuncs.EFT, critical_path=True))


class SagaScheduler(DAGScheduler):
    """Plan with a SAGA scheduler.

    Parameters
    ----------
    scheduler : str or saga.Scheduler
        A scheduler name, case-insensitive: ``"heft"``, ``"cpop"`` or any
        scheduler of ``saga.schedulers`` without its ``Scheduler`` suffix
        (e.g. ``"minmin"``); or a SAGA scheduler instance. ``"heft"`` is
        HEFT expressed as SAGA's ``ParametricScheduler(UpwardRanking(),
        GreedyInsert(EFT))``, which honours per-task node constraints (the
        executors a task may run on). Other schedulers are given the
        constraints through the initial schedule; one that places a task on
        a forbidden slot is reported as a :class:`PlanningError`.
    """

    def __init__(self, scheduler: Any = "heft") -> None:
        saga = _import_saga()
        if isinstance(scheduler, str):
            key = scheduler.lower()
            valid = saga_scheduler_names()
            if key not in valid:
                raise ValueError(f"Unknown SAGA scheduler {scheduler!r}; "
                                 f"valid names are: {', '.join(valid)}")
            if key in ("heft", "cpop"):
                self._saga = _constrained_variant(key)
            else:
                cls = {n.lower(): n for n in saga.schedulers.__all__}[key + "scheduler"]
                try:
                    self._saga = getattr(saga.schedulers, cls)()
                except Exception as e:
                    raise ValueError(f"SAGA scheduler {cls} cannot be built without arguments; "
                                     "pass an instance instead") from e
            self._name = key
        elif isinstance(scheduler, saga.Scheduler):
            self._saga = scheduler
            self._name = type(scheduler).__name__
        else:
            raise TypeError("scheduler must be a name or a saga.Scheduler, "
                            f"not {type(scheduler).__name__}")

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"SagaScheduler({self._name!r})"

    def schedule(self, tasks: Sequence[PlanTask], slots: Sequence[Slot]) -> dict[int, Placement]:
        import networkx as nx  # type: ignore[import-untyped]
        saga = _import_saga()
        from saga.schedulers.parametric import (
            ParametricScheduler,
        )

        network_nx = nx.Graph()
        for s in slots:
            network_nx.add_node(s.name, weight=s.speed)
        # Fill every link, self-loops included: SAGA fails on a missing link.
        # As in the native HEFT, only node-local files cost time, and only
        # between nodes (see PlanTask.input_sizes and link_bandwidth).
        for i, a in enumerate(slots):
            for b in slots[i:]:
                network_nx.add_edge(a.name, b.name, weight=link_bandwidth(a, b))
        network = saga.Network.from_nx(network_nx)

        graph_nx = nx.DiGraph()
        # Provide SAGA's super source and sink up front: when it has to add
        # them itself it logs through the root logger, which configures
        # logging for the whole process. SAGA wires them to the real
        # sources and sinks; they are dropped from the placements below.
        for super_task in SUPER_TASKS:
            graph_nx.add_node(super_task, weight=0.0)
        for t in tasks:
            graph_nx.add_node(str(t.task_id), weight=t.cost)
        for t in tasks:
            sizes = dict(t.input_sizes)
            for d in t.depends_on:
                graph_nx.add_edge(str(d), str(t.task_id), weight=sizes.get(d, 0.0))
        task_graph = saga.TaskGraph.from_nx(graph_nx)

        constraints: dict[str, set[str]] | None = None
        if any(t.allowed_slots is not None for t in tasks):
            constraints = {str(t.task_id): set(t.allowed_slots)
                           for t in tasks if t.allowed_slots is not None}

        try:
            if constraints is None:
                schedule = self._saga.schedule(network, task_graph)
            elif isinstance(self._saga, ParametricScheduler):
                schedule = self._saga.schedule(network, task_graph, node_constraints=constraints)
            else:
                initial = saga.Schedule(task_graph, network, node_constraints=constraints)
                schedule = self._saga.schedule(network, task_graph, schedule=initial)
        except saga.ConstraintViolation as e:
            raise PlanningError(f"SAGA scheduler {self._name} cannot honour the executors "
                                "tasks may run on "
                                f"({e}); use 'heft' or 'cpop'") from e

        placements: dict[int, Placement] = {}
        for slot_name, scheduled in schedule.mapping.items():
            for st in scheduled:
                if st.name in SUPER_TASKS:
                    continue
                tid = int(st.name)
                placements[tid] = Placement(task_id=tid, slot=slot_name,
                                            start=float(st.start), end=float(st.end))
        check_placements(tasks, slots, placements, self._name)
        return placements
