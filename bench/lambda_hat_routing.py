"""Routed (htex32 + htex64) against the all-x64 single-executor workaround, one run.

The workaround the routing patch retires: with no per-call executor choice, everything
ran on one executor started with JAX_ENABLE_X64=1, so the float32 samplers (SGLD, VI)
paid float64 prices. Both modes get the same worker slots (the workaround's executor has
as many workers as the two routed executors together) and fresh artifact stores, so
both pay for building targets and starting workers.

    uv run python bench/lambda_hat_routing.py [CONFIG] [--repeats N]

Prints the wall times and their ratio, and writes them with the machine's description
to bench/results/lambda_hat_routing.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, machine
from lambda_hat.cli import run_experiment
from lambda_hat.config import load_config


def one(config: Path, parsl_yaml: Path, all_x64: bool) -> tuple[float, dict[str, float]]:
    cfg = load_config(config)
    with tempfile.TemporaryDirectory(prefix="lambda_hat_bench_") as tmp:
        run = run_experiment(
            cfg, parsl_yaml, Path(tmp) / "out", Path(tmp) / "artifacts", all_x64=all_x64
        )
    per_task = {f"{r['sampler']['name']}/{r['target']}": r["seconds"] for r in run["results"]}
    return run["total_seconds"], per_task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", type=Path, default=ROOT / "config" / "routing.yaml")
    parser.add_argument("--parsl", type=Path, default=ROOT / "config" / "parsl" / "local.yaml")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "lambda_hat_routing.json")
    args = parser.parse_args()

    walls: dict[str, list[float]] = {"routed": [], "all_x64": []}
    tasks: dict[str, list[dict[str, float]]] = {"routed": [], "all_x64": []}
    for i in range(args.repeats):
        # Alternate the order so a warm page cache or a busy neighbour favours neither.
        order = ("routed", "all_x64") if i % 2 == 0 else ("all_x64", "routed")
        for mode in order:
            start = time.perf_counter()
            wall, per_task = one(args.config, args.parsl, all_x64=mode == "all_x64")
            elapsed = time.perf_counter() - start  # includes Parsl start-up and shutdown
            print(
                f"repeat {i + 1}/{args.repeats} {mode}: workflow {wall:.1f}s, total {elapsed:.1f}s"
            )
            walls[mode].append(wall)
            tasks[mode].append(per_task)

    routed, x64 = statistics.median(walls["routed"]), statistics.median(walls["all_x64"])
    result = {
        "config": str(args.config),
        "repeats": args.repeats,
        "machine": machine(),
        "wall_seconds": walls,
        "median_routed": routed,
        "median_all_x64": x64,
        "ratio_all_x64_over_routed": x64 / routed,
        "task_seconds": tasks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    m = result["machine"]
    print(f"machine: {m['platform']}, {m['cpus']} CPUs; repeats: {args.repeats}")
    print(f"routed {routed:.1f}s, all-x64 {x64:.1f}s: all-x64 / routed = {x64 / routed:.2f}x")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
