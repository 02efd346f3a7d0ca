"""`make dist`'s wheels, installed with plain pip (no uv) into a fresh virtual environment,
as README.md's "Install into your own environment" says.

The wheels' versions name the series; parsl-saga cannot be installed with upstream Parsl;
the default install (no SAGA) plans a diamond with HEFT and runs it node by node on the
local multi-node cluster; the ``saga`` extra takes the SAGA fork and plans with a SAGA
scheduler. pip uses the machine's own index configuration for the other dependencies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from parsl_saga.local_cluster import cleanup_stale

REPO = Path(__file__).resolve().parent.parent
PLAN_WORKFLOW = REPO / "scripts" / "plan_workflow.py"
NODES = {"node-a", "node-b", "node-c", "node-d"}  # scripts/plan_workflow.py's cluster


def fork_versions() -> dict[str, str]:
    """{distribution: <pinned release>+saga.<number of patches>}, from forks.toml and the
    series files (independently of scripts/fork.py, which the wheels come from)."""
    with open(REPO / "forks.toml", "rb") as f:
        pins = tomllib.load(f)
    return {pin["distribution"]: "{}+saga.{}".format(
                pin["version"], len((REPO / "patches" / fork / "series").read_text().split()))
            for fork, pin in pins.items()}


def clean_env(venv: Path) -> dict[str, str]:
    """The environment without the project's uv environment: the fresh venv's bin first."""
    dev_bin = str(REPO / ".venv" / "bin")
    path = [str(venv / "bin"), *(p for p in os.environ["PATH"].split(os.pathsep)
                                 if p and p != dev_bin)]
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("UV_")}
    return {**env, "PATH": os.pathsep.join(path)}


def run(cmd: list[str | Path], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own process group; on a time-out, end that group and whatever
    cluster it left (cleanup_stale), then fail."""
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        cleanup_stale()
        pytest.fail(f"{cmd} did not finish in {timeout} s:\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, \
        f"{result.args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{distribution: wheel}, built by `scripts/fork.py dist` as `make dist` runs it."""
    out = tmp_path_factory.mktemp("dist")
    ok(run([sys.executable, "-P", REPO / "scripts" / "fork.py", "dist", "--out", out], cwd=REPO))
    built = {p.name.split("-")[0].replace("_", "-"): p for p in out.glob("*.whl")}
    assert sorted(built) == ["anrg-saga", "parsl", "parsl-saga"], sorted(out.iterdir())
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Path:
    """A fresh Python 3.12 venv with the default install: the Parsl fork and parsl-saga."""
    root = tmp_path_factory.mktemp("venv")
    ok(run([sys.executable, "-m", "venv", root], cwd=root))
    ok(run([root / "bin" / "pip", "install", "--quiet", wheels["parsl"], wheels["parsl-saga"]],
           cwd=root, env=clean_env(root)))
    return root


def python(venv: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([venv / "bin" / "python", "-P", "-c", code], cwd=cwd, env=clean_env(venv))


def plan_diamond(venv: Path, scheduler: str, out: Path) -> dict:
    """scripts/plan_workflow.py's diamond, run by the venv's Python from outside the repo;
    it exits 1 if any task ran off its planned node."""
    ok(run([venv / "bin" / "python", "-P", PLAN_WORKFLOW, "--scheduler", scheduler,
            "--out", out], cwd=out.parent, env=clean_env(venv), timeout=300))
    return json.loads((out / "plan.json").read_text())


def test_wheels_carry_the_series_versions_and_pin_the_forks(wheels: dict[str, Path]) -> None:
    versions = fork_versions()
    for distribution, version in versions.items():
        assert wheels[distribution].name.startswith(
            f"{distribution.replace('-', '_')}-{version}-"), wheels[distribution].name
    with zipfile.ZipFile(wheels["parsl-saga"]) as wheel:
        [metadata] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        names = wheel.namelist()
        requires = [line.removeprefix("Requires-Dist: ")
                    for line in wheel.read(metadata).decode().splitlines()
                    if line.startswith("Requires-Dist: ")]
    assert f"parsl=={versions['parsl']}" in requires
    assert f"anrg-saga=={versions['anrg-saga']}; extra == 'saga'" in requires
    assert not [r for r in requires if r.startswith("anrg-saga") and "extra" not in r]
    assert "psutil" in {r.split(">")[0].split("=")[0] for r in requires}
    # The Kubernetes stand-in is test code, not part of the package.
    assert not [n for n in names if "k8s_standin" in n]
    assert "parsl_saga/local_cluster.py" in names


def test_pip_cannot_pair_parsl_saga_with_upstream_parsl(venv: Path,
                                                        wheels: dict[str, Path]) -> None:
    # Ignoring the installed fork, pip must find no Parsl on the index that satisfies
    # parsl-saga: upstream 2026.10.26 is there, but does not match the local version.
    result = run([venv / "bin" / "pip", "install", "--dry-run", "--ignore-installed",
                  wheels["parsl-saga"]], cwd=venv, env=clean_env(venv))
    assert result.returncode != 0
    assert f"No matching distribution found for parsl=={fork_versions()['parsl']}" in \
        result.stderr


def test_default_install_is_the_fork_without_saga(venv: Path) -> None:
    version = fork_versions()["parsl"]
    out = ok(python(venv, "import importlib.metadata as m, parsl, parsl_saga.local_cluster; "
                          "print(parsl.__version__, m.version('parsl'), parsl.__file__)", venv))
    reported, installed, location = out.split()
    assert (reported, installed) == (version, version)
    assert Path(location).is_relative_to(venv)
    no_saga = python(venv, "import saga", venv)
    assert no_saga.returncode != 0 and "ModuleNotFoundError: No module named 'saga'" in \
        no_saga.stderr
    ok(run([venv / "bin" / "pip", "check"], cwd=venv, env=clean_env(venv)))


def test_default_install_plans_heft_and_runs_each_task_on_its_node(venv: Path,
                                                                   tmp_path: Path) -> None:
    plan = plan_diamond(venv, "heft", tmp_path / "heft")
    assert plan["scheduler"] == "heft"
    assert len(plan["tasks"]) == 4
    assert {t["node"] for t in plan["tasks"]} <= NODES
    assert all(t.get("actual_end") is not None for t in plan["tasks"])
    assert python(venv, "import saga", venv).returncode != 0


@pytest.fixture
def saga_installed(venv: Path, wheels: dict[str, Path]) -> Iterator[Path]:
    """The venv with parsl-saga's ``saga`` extra, taken from the SAGA fork's wheel; removed
    again afterwards, so the venv stays the default install for the other tests."""
    env = clean_env(venv)
    ok(run([venv / "bin" / "pip", "install", "--quiet", f"{wheels['parsl-saga']}[saga]",
            wheels["anrg-saga"]], cwd=venv, env=env))
    try:
        yield venv
    finally:
        ok(run([venv / "bin" / "pip", "uninstall", "--yes", "anrg-saga"], cwd=venv, env=env))


def test_saga_extra_takes_the_saga_fork_and_plans_with_cpop(saga_installed: Path,
                                                            tmp_path: Path) -> None:
    out = ok(python(saga_installed, "import importlib.metadata as m, saga; "
                                    "print(m.version('anrg-saga'))", saga_installed))
    assert out.strip() == fork_versions()["anrg-saga"]
    plan = plan_diamond(saga_installed, "cpop", tmp_path / "cpop")
    assert plan["scheduler"] == "cpop"
    assert len(plan["tasks"]) == 4
    assert all(t.get("actual_end") is not None for t in plan["tasks"])
