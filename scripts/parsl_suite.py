"""Run Parsl's own test suite (shipped in the sdist) on the fork, against a baseline.

The baseline is the list of tests that fail on the pinned upstream release itself,
recorded in ``tests/upstream-baseline/<suite>.txt`` by ``baseline``. ``compare`` runs the
same suite on the fork and fails only on regressions: tests that fail on the fork but
not on upstream. A regression is run once more on its own before it counts, because a
few upstream tests are timing-sensitive on a loaded 2-core machine; every rerun is
reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import fork

ROOT = Path(__file__).resolve().parent.parent
BASELINE_DIR = ROOT / "tests" / "upstream-baseline"
BASELINE_ENV = ROOT / ".cache" / "baseline"
HTEX_LOCAL = "parsl/tests/configs/htex_local.py"
# Needs no network: upstream marks tests that reach the internet "cleannet".
DESELECT = "not cleannet"


@dataclass(frozen=True)
class Run:
    config: str
    paths: tuple[str, ...]


SUITES: dict[str, tuple[Run, ...]] = {
    # What `make test` runs: the parts of Parsl our patches touch.
    "fast": (
        Run("local", ("parsl/tests/test_htex", "parsl/tests/test_error_handling",
                      "parsl/tests/test_python_apps")),
        Run(HTEX_LOCAL, ("parsl/tests/test_python_apps/test_dependencies.py",
                         "parsl/tests/test_python_apps/test_dependencies_deep.py",
                         "parsl/tests/test_python_apps/test_depfail_propagation.py",
                         "parsl/tests/test_python_apps/test_join.py",
                         "parsl/tests/test_python_apps/test_basic.py",
                         "parsl/tests/test_error_handling/test_retries.py",
                         "parsl/tests/test_error_handling/test_resource_spec.py")),
    ),
    # What `make test-upstream` runs: upstream's config_local_test and htex_local_test.
    "full": (
        Run("local", ("parsl/tests",)),
        Run(HTEX_LOCAL, ("parsl/tests",)),
    ),
}


def run_pytest(python: Path, tree: Path, run: Run, junit: Path,
               only: list[str] | None = None) -> dict[str, str]:
    """Run one pytest invocation in ``tree``; return {test id: outcome}."""
    selection = only if only is not None else list(run.paths)
    # The sdist has no pytest ini file; pin rootdir and config to the tree so that
    # this repo's pyproject.toml does not apply and test ids are tree-relative.
    cmd = [str(python), "-m", "pytest", *selection, "--config", run.config, "-k", DESELECT,
           "--rootdir", str(tree), "-c", str(tree / "setup.cfg"), "-p", "no:cacheprovider",
           "-q", "--timeout=300", "--durations=15", "--continue-on-collection-errors",
           f"--junitxml={junit}"]
    # As an activated environment: upstream's launch commands need its bin dir on PATH.
    bin_dir = str(python.parent)
    env = {**os.environ, "PYTHONHASHSEED": "0", "VIRTUAL_ENV": str(python.parent.parent),
           "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    print(f"$ (cd {tree.relative_to(ROOT)}) {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, cwd=tree, env=env, check=False, stdout=sys.stdout, stderr=sys.stderr)
    return outcomes(junit, run.config)


def outcomes(junit: Path, config: str) -> dict[str, str]:
    if not junit.exists():
        return {}
    results = {}
    for case in ET.parse(junit).iter("testcase"):
        test_id = f"{config}::{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            results[test_id] = "failed"
        elif "skipped" in kinds:
            results[test_id] = "skipped"
        else:
            results[test_id] = "passed"
    return results


def node_id(test_id: str, tree: Path) -> str:
    """Turn ``config::a.b.test_mod::test_x[p]`` back into a pytest node id."""
    _, classname, name = test_id.split("::", 2)
    parts = classname.split(".")
    # classname is the module path, possibly followed by a test class name.
    for cut in range(len(parts), 0, -1):
        module = Path(*parts[:cut]).with_suffix(".py")
        if (tree / module).exists():
            return "::".join([str(module), *parts[cut:], name])
    return name


def series_test_runs(tree: Path, suite: str) -> tuple[Run, ...]:
    """The Parsl test files our series adds or changes that ``suite`` does not run yet,
    under both configurations (marked-local tests, and unmarked ones on htex_local), so
    that every patch's own tests run in `make test`."""
    changed = subprocess.run(
        ["git", "-C", str(tree), "diff", "--name-only", "--diff-filter=AM", "upstream", "HEAD",
         "--", "parsl/tests/"], check=True, capture_output=True, text=True).stdout.split()
    files = [f for f in changed if Path(f).name.startswith("test_") and f.endswith(".py")]
    runs = []
    for config in dict.fromkeys(run.config for run in SUITES[suite]):
        covered = [p for run in SUITES[suite] if run.config == config for p in run.paths]
        extra = tuple(f for f in files
                      if not any(f == p or f.startswith(p + "/") for p in covered)
                      and (config == "local" or has_unmarked_tests(tree / f)))
        if extra:
            runs.append(Run(config, extra))
    return tuple(runs)


def has_unmarked_tests(path: Path) -> bool:
    """Whether a test file may hold tests that a non-local config runs: the files our
    patches add mark every test local, and a run that collects nothing proves nothing."""
    return "pytest.mark.local" not in path.read_text()


def run_suite(python: Path, tree: Path, suite: str, runs: tuple[Run, ...] = ()) -> dict[str, str]:
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="parsl-suite-") as tmp:
        for index, run in enumerate(SUITES[suite] + runs):
            results |= run_pytest(python, tree, run, Path(tmp) / f"{index}.xml")
    return results


def baseline_python() -> Path:
    """An environment with the pinned upstream Parsl, unpatched, in editable mode."""
    tree = BASELINE_ENV / "parsl"
    python = BASELINE_ENV / "venv" / "bin" / "python"
    if not tree.exists():
        pin = fork.load_pins()["parsl"]
        sdist = fork.fetch_sdist(pin.distribution, pin.version, pin.sha256)
        fork.unpack_upstream(sdist, tree, f"{pin.distribution} {pin.version}")
    if not python.exists():
        subprocess.run(["uv", "venv", "--quiet", "--python", "3.12", str(python.parent.parent)],
                       check=True)
        # As in upstream's CI: the monitoring extra and pandas, which some tests import.
        subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(python),
                        "-e", f"{tree}[monitoring]", "pandas", "pytest>=7.4,<8",
                        "pytest-timeout"], check=True)
    return python


def baseline(suite: str) -> int:
    python = baseline_python()
    results = run_suite(python, BASELINE_ENV / "parsl", suite)
    failing = sorted(t for t, outcome in results.items() if outcome == "failed")
    BASELINE_DIR.mkdir(parents=True, exist_ok=True)
    header = (f"# Tests of suite '{suite}' that fail on the pinned upstream Parsl itself,\n"
              f"# recorded by `python scripts/parsl_suite.py baseline {suite}` "
              f"({len(results)} tests run).\n")
    (BASELINE_DIR / f"{suite}.txt").write_text(header + "".join(f"{t}\n" for t in failing))
    print(f"baseline: {len(failing)} of {len(results)} tests fail on upstream")
    return 0


def known_failures(suite: str) -> set[str]:
    path = BASELINE_DIR / f"{suite}.txt"
    if not path.exists():
        sys.exit(f"no baseline at {path}; record one with "
                 f"`python scripts/parsl_suite.py baseline {suite}`")
    return {line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def rerun_alone(python: Path, tree: Path, test_id: str) -> str:
    config = test_id.split("::", 1)[0]
    with tempfile.TemporaryDirectory(prefix="parsl-rerun-") as tmp:
        run = Run(config, ())
        result = run_pytest(python, tree, run, Path(tmp) / "r.xml",
                            only=[node_id(test_id, tree)])
    return result.get(test_id, "failed")


def compare(suite: str, tree: Path) -> int:
    known = known_failures(suite)
    python = Path(sys.executable)
    results = run_suite(python, tree, suite, series_test_runs(tree, suite))
    if not results:
        print("compare: no test ran; see the pytest output above")
        return 1
    suspects = sorted(t for t, o in results.items() if o == "failed" and t not in known)
    regressions = []
    for test_id in suspects:
        outcome = rerun_alone(python, tree, test_id)
        print(f"rerun of {test_id}: {outcome}")
        if outcome == "failed":
            regressions.append(test_id)
    counts = {o: sum(v == o for v in results.values()) for o in ("passed", "failed", "skipped")}
    print(f"\nParsl suite '{suite}' on the fork: {counts['passed']} passed, {counts['failed']} "
          f"failed ({len(known & results.keys())} of them known to fail on upstream, "
          f"{len(suspects) - len(regressions)} passed on rerun), {counts['skipped']} skipped")
    for test_id in regressions:
        print(f"REGRESSION: {test_id}")
    # The fork's own verdict, as a plain closing line: tests that failed on upstream too
    # are not the fork's failures, and were reported above.
    print(f"parsl: {counts['passed']} passed, {len(regressions)} failed")
    return 1 if regressions else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["baseline", "compare", "python"],
                        help="python: print the interpreter of the pinned upstream's "
                             "environment, built on first use (for benchmarks)")
    parser.add_argument("suite", choices=sorted(SUITES), nargs="?")
    parser.add_argument("--tree", type=Path, default=ROOT / "parsl",
                        help="the fork tree to test with compare (default: parsl/); another "
                             "worktree lets a long run go on beside `make test`, which the "
                             "suite's shared pytest-parsl/parsltest-current link would upset. "
                             "Put that tree first on PYTHONPATH.")
    args = parser.parse_args()
    if shutil.which("uv") is None and args.command == "baseline":
        sys.exit("baseline needs uv on PATH (pip install uv)")
    if args.command == "python":
        print(baseline_python())
        return
    if args.suite is None:
        parser.error(f"{args.command} needs a suite: {', '.join(sorted(SUITES))}")
    sys.exit(baseline(args.suite) if args.command == "baseline"
             else compare(args.suite, args.tree.resolve()))


if __name__ == "__main__":
    main()
