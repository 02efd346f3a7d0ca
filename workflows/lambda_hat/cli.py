"""``lambda-hat run CONFIG``: run the LLC workflow on the fork and report.

Loads the experiment and the Parsl executors, runs targets x samplers with per-dtype
routing, shows progress, then prints the plan (when the DFK plans), the LLC table beside
the known values and where each task ran, and writes everything to ``out/<experiment>/``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from lambda_hat.config import ExperimentConfig, load_config
from parsl_saga.gantt import plot_plan

DEFAULT_PARSL = "config/parsl/local.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambda-hat", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment config")
    run.add_argument("config", type=Path)
    run.add_argument(
        "--parsl", type=Path, default=None, help=f"executors YAML (default: {DEFAULT_PARSL})"
    )
    run.add_argument(
        "--out", type=Path, default=None, help="output directory (default: out/<experiment>)"
    )
    run.add_argument(
        "--artifacts", type=Path, default=None, help="target artifact store (default from config)"
    )
    run.add_argument(
        "--all-x64",
        action="store_true",
        help="the single-executor workaround: everything float64 on htex64",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    return parser


def run_experiment(
    cfg: ExperimentConfig,
    parsl_yaml: Path,
    out: Path,
    artifacts: Path,
    *,
    all_x64: bool = False,
) -> dict[str, Any]:
    """Load Parsl, run the workflow, write the outputs, shut Parsl down."""
    import parsl

    from lambda_hat.parsl_config import build_config, load_parsl_spec, only
    from lambda_hat.report import write_outputs
    from lambda_hat.workflow import X64_EXECUTOR, run_workflow

    spec = load_parsl_spec(parsl_yaml)
    if all_x64:
        workers = sum(e.max_workers_per_node for e in spec.executors)  # same slots, one executor
        spec = only(spec, X64_EXECUTOR, workers)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    dfk = parsl.load(build_config(spec, out / "runinfo"))
    try:
        run = run_workflow(cfg, dfk, str(artifacts.resolve()), all_x64=all_x64)
    finally:
        dfk.cleanup()
        parsl.clear()
    run["total_seconds"] = time.perf_counter() - started
    run["mode"] = "all-x64" if all_x64 else "routed"
    run["out"] = str(out)
    run["estimates"] = write_outputs(run, out)
    if run["plan"] is not None:
        plot_plan(run["plan"], out / "gantt.png")
        run["plan"].write_json(str(out / "plan.json"))
    return run


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Parsl sets its own loggers to DEBUG; filter at the handler so only what the user
    # asked for reaches the terminal (Parsl's full log is in the run directory).
    handler = logging.StreamHandler()
    handler.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    cfg = load_config(args.config)
    parsl_yaml = args.parsl or Path(cfg.parsl or DEFAULT_PARSL)
    out = args.out or Path(cfg.out) / cfg.experiment
    artifacts = args.artifacts or Path(cfg.artifacts)
    print(
        f"lambda-hat: {cfg.experiment}: {len(cfg.targets)} targets x {len(cfg.samplers)} samplers",
        flush=True,
    )
    run = run_experiment(cfg, parsl_yaml, out, artifacts, all_x64=args.all_x64)

    from lambda_hat.analysis import estimates_table
    from lambda_hat.report import placement_table, placements

    print("\nLLC estimates (mean ± SE across chains) beside the known values:")
    print(estimates_table(run["estimates"]))
    print("\nWhere each task ran:")
    print(placement_table(placements(run)))
    plan = run["plan"]
    if plan is not None:
        print(f"\nplanned makespan {plan.makespan:.1f}s, actual {plan.actual_makespan:.1f}s")
    print(f"wall time {run['total_seconds']:.1f}s; outputs in {out}/")
    return 0
