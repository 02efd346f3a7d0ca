"""`make bench`: run every benchmark, then write docs/benchmarks.md from their results.

Each step runs in its own interpreter and writes bench/results/<step>.json; its old file
is removed first, so the report can only show figures from this run. bench/results/run.json
records the mode, the machine and each step's duration and status for bench/report.py.
A failed step is reported as failed; the others still run, and the exit status is 1.
``--only STEP ...`` re-runs those steps alone and keeps the other results of the last run;
run.json then records when each re-run step ran, and the report says so.

    uv run --group bench python bench/run.py [--quick] [--only lambda_hat_routing]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

from common import RESULTS, ROOT, machine

BENCH = ROOT / "bench"
# (result name, script, runs in quick mode). The runner passes --quick to each in quick mode.
STEPS = [
    ("scheduler_cost", "scheduler_cost.py", True),
    ("generated", "generated.py", True),
    ("makespan", "makespan.py", True),
    # Adaptive against static plan execution and stock, as estimates worsen, and a node
    # lost mid-run (issue 16); about 45 minutes (a few in quick mode).
    ("adaptive", "adaptive.py", True),
    ("interchange_throughput", "interchange_throughput.py", True),
    # The interchange's re-plan of its queued tasks against HEFT from scratch (issue 16).
    ("replan_cost", "replan_cost.py", True),
    # The DFK's cost per submitted task, planned against unplanned (issue 14).
    ("submit_cost", "submit_cost.py", True),
    # SAGA's own HEFT, pinned upstream against our SAGA series (issue 9's speed patches).
    ("saga_heft_speed", "saga_heft_speed.py", True),
    # A shared trace on a real Slurm cluster, stock Parsl against the fork's plan (issue 18);
    # about 10 minutes (3 in quick mode). Writes a skipped result where Slurm cannot run.
    ("slurm_makespan", "slurm_makespan.py", True),
    # The LLC workflow twice (about 8 minutes on 2 cores) and it has no quick setting.
    ("lambda_hat_routing", "lambda_hat_routing.py", False),
]


def run_step(name: str, script: str, quick: bool) -> dict[str, object]:
    (RESULTS / f"{name}.json").unlink(missing_ok=True)
    # Plain scripts: Python puts bench/ first on their module path, so they import common.
    cmd = [sys.executable, str(BENCH / script), *(["--quick"] if quick else [])]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    started_at = now()
    started = time.perf_counter()
    code = subprocess.run(cmd, cwd=ROOT, env=os.environ).returncode
    seconds = time.perf_counter() - started
    ok = code == 0 and (RESULTS / f"{name}.json").exists()
    print(f"== {name}: {'ok' if ok else f'FAILED (exit {code})'} in {seconds:.0f} s", flush=True)
    return {"name": name, "seconds": seconds, "ok": ok, "started": started_at}


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def rerun(names: list[str]) -> dict[str, object]:
    """The last run's record with the steps *names* run again."""
    record = RESULTS / "run.json"
    if not record.exists():
        raise SystemExit(f"--only needs a previous run's {record}: run make bench first")
    run = json.loads(record.read_text())
    steps = {name: (script, in_quick) for name, script, in_quick in STEPS}
    unknown = sorted(set(names) - set(steps))
    if unknown:
        raise SystemExit(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(steps)}")
    done = {name: run_step(name, steps[name][0], run["mode"] == "quick") | {"rerun": True}
            for name in names}
    earlier = {s["name"] for s in run["steps"]}
    run["steps"] = ([done.get(s["name"], s) for s in run["steps"]]
                    + [s for name, s in done.items() if name not in earlier])
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="under 5 minutes on a quiet machine")
    parser.add_argument("--only", nargs="+", metavar="STEP",
                        help="re-run these steps, keep the last run's other results")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.only:
        run = rerun(args.only)
    else:
        run = {"mode": "quick" if args.quick else "full", "machine": machine(),
               "started": now(), "steps": []}
        started = time.perf_counter()
        for name, script, in_quick in STEPS:
            if in_quick or not args.quick:
                run["steps"].append(run_step(name, script, args.quick))
        run["seconds"] = time.perf_counter() - started
    (RESULTS / "run.json").write_text(json.dumps(run, indent=2))
    report = subprocess.run([sys.executable, str(BENCH / "report.py")], cwd=ROOT)
    failed = [s["name"] for s in run["steps"] if not s["ok"]]
    if failed:
        print(f"failed steps: {', '.join(failed)}")
    return 1 if failed or report.returncode else 0


if __name__ == "__main__":
    raise SystemExit(main())
