"""scripts/fork.py on a scratch copy of the repo: round trip, idempotence and errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_fork(root: Path, *args: str, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, str(root / "scripts" / "fork.py"), *args],
                            capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the repo's fork inputs, with the sdist cache, and no fork trees yet."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "fork.py", tmp_path / "scripts")
    shutil.copy(REPO / "forks.toml", tmp_path)
    shutil.copytree(REPO / "patches", tmp_path / "patches")
    cache = REPO / ".cache" / "sdists"
    if cache.exists():
        shutil.copytree(cache, tmp_path / ".cache" / "sdists",
                        ignore=shutil.ignore_patterns("*.part", "*.rejected"))
    return tmp_path


@pytest.fixture
def materialized(scratch: Path) -> Path:
    run_fork(scratch, "materialize")
    return scratch


def commit_change(tree: Path, path: str, old: str, new: str, message: str) -> None:
    target = tree / path
    target.write_text(target.read_text().replace(old, new, 1))
    git(tree, "commit", "-qam", message)


def test_materialize_builds_one_commit_per_patch(materialized: Path) -> None:
    for fork in ("parsl", "saga"):
        patches = (materialized / "patches" / fork / "series").read_text().split()
        log = git(materialized / fork, "log", "--format=%s", "upstream..HEAD").splitlines()
        assert len(log) == len(patches)
        assert git(materialized / fork, "status", "--porcelain") == ""


def test_round_trip_exports_exactly_the_change(materialized: Path) -> None:
    tree = materialized / "parsl"
    commit_change(tree, "parsl/version.py", "VERSION = ", "VERSION = 'fork-' + ",
                  "Mark fork version")
    run_fork(materialized, "export", "parsl")
    run_fork(materialized, "check", "parsl")

    series = (materialized / "patches" / "parsl" / "series").read_text().split()
    newest = (materialized / "patches" / "parsl" / series[-1]).read_text()
    assert "Subject: [PATCH] Mark fork version" in newest
    changed = [line for line in newest.splitlines()
               if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    assert len(changed) == 2
    assert changed[1].startswith("+VERSION = 'fork-' + ")


def test_export_is_byte_identical_when_nothing_changed(materialized: Path) -> None:
    patch_dir = materialized / "patches"
    before = {p: p.read_bytes() for p in patch_dir.rglob("*") if p.is_file()}
    run_fork(materialized, "export")
    after = {p: p.read_bytes() for p in patch_dir.rglob("*") if p.is_file()}
    assert after == before


def test_materialize_again_touches_nothing(materialized: Path) -> None:
    head = git(materialized / "parsl", "rev-parse", "HEAD")
    marker = materialized / "parsl" / "setup.py"
    mtime = marker.stat().st_mtime_ns
    result = run_fork(materialized, "materialize")
    assert "up to date" in result.stdout
    assert git(materialized / "parsl", "rev-parse", "HEAD") == head
    assert marker.stat().st_mtime_ns == mtime


def test_materialize_refuses_uncommitted_work(materialized: Path) -> None:
    edited = materialized / "parsl" / "setup.py"
    edited.write_text(edited.read_text() + "# work in progress\n")
    result = run_fork(materialized, "materialize", check=False)
    assert result.returncode == 1
    assert "uncommitted changes" in result.stderr and "make export" in result.stderr
    assert edited.read_text().endswith("# work in progress\n")


def test_materialize_refuses_unexported_commits(materialized: Path) -> None:
    (materialized / "parsl" / "setup.py").write_text("# changed\n")
    git(materialized / "parsl", "commit", "-qam", "Unexported work")
    result = run_fork(materialized, "materialize", check=False)
    assert result.returncode == 1
    assert "not in patches/parsl/" in result.stderr
    assert "Unexported work" in git(materialized / "parsl", "log", "-1", "--format=%s")


def test_check_fails_on_hand_edited_patch(materialized: Path) -> None:
    series = (materialized / "patches" / "parsl" / "series").read_text().split()
    patch = materialized / "patches" / "parsl" / series[0]
    patch.write_text(patch.read_text().replace("Subject: [PATCH]", "Subject: [PATCH] edited", 1))
    result = run_fork(materialized, "check", "parsl", check=False)
    assert result.returncode == 1
    assert "not a clean export" in result.stderr and series[0] in result.stderr


def add_patch_that_cannot_apply(scratch: Path) -> str:
    """Append to the Parsl series a patch whose hunk matches nothing in setup.py."""
    patch_dir = scratch / "patches" / "parsl"
    bad = patch_dir / "9999-Change-a-missing-line.patch"
    bad.write_text(
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        "From: A <a@example.invalid>\nDate: Sat, 1 Jan 2000 00:00:00 +0000\n"
        "Subject: [PATCH] Change a missing line\n\n---\n"
        "diff --git a/setup.py b/setup.py\n--- a/setup.py\n+++ b/setup.py\n"
        "@@ -1,1 +1,1 @@\n-this line is not in setup.py\n+nor is this one\n")
    with open(patch_dir / "series", "a") as series:
        series.write(bad.name + "\n")
    return bad.name


def test_patch_that_does_not_apply_is_named(scratch: Path) -> None:
    bad_name = add_patch_that_cannot_apply(scratch)
    result = run_fork(scratch, "materialize", "parsl", check=False)
    assert result.returncode == 1
    assert bad_name in result.stderr and "setup.py" in result.stderr
    assert not (scratch / "parsl").exists()


def test_hash_mismatch_is_an_error_and_not_redownloaded(scratch: Path) -> None:
    cached = scratch / ".cache" / "sdists" / "anrg-saga-2.1.0.tar.gz"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"not the pinned sdist")
    result = run_fork(scratch, "materialize", "saga", check=False)
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr and "anrg-saga 2.1.0" in result.stderr
    assert cached.with_suffix(".rejected").read_bytes() == b"not the pinned sdist"


def test_unreachable_index_is_reported(scratch: Path) -> None:
    shutil.rmtree(scratch / ".cache", ignore_errors=True)
    result = run_fork(scratch, "materialize", "saga", check=False,
                      env={"PARSL_SAGA_INDEX_URL": "http://127.0.0.1:9/simple"})
    assert result.returncode == 1
    assert "cannot reach the package index" in result.stderr


def test_unknown_fork_lists_the_known_ones(scratch: Path) -> None:
    result = run_fork(scratch, "check", "dask", check=False)
    assert result.returncode == 1
    assert "parsl" in result.stderr and "saga" in result.stderr


def test_rebase_check_reports_each_patch(scratch: Path) -> None:
    """Against the previous Parsl release from PyPI (CI reaches PyPI), with one patch
    added that cannot apply: it is reported as a conflict naming its file, and the
    report goes on to the end of the series."""
    bad_name = add_patch_that_cannot_apply(scratch)
    result = run_fork(scratch, "rebase-check", "2026.10.19", "--fork", "parsl", check=False)
    assert result.returncode == 0, result.stderr
    series = (scratch / "patches" / "parsl" / "series").read_text().split()
    lines = {name: [line for line in result.stdout.splitlines() if name in line]
             for name in series}
    for name in series[:-1]:
        assert len(lines[name]) == 1 and "clean" in lines[name][0], result.stdout
    (bad_line,) = lines[bad_name]
    assert bad_line.split()[0] == "conflict" and "[setup.py]" in bad_line, result.stdout
    assert f"{len(series) - 1} clean, 1 conflicting" in result.stdout


def test_dist_refuses_a_parsl_pin_the_series_does_not_make(scratch: Path) -> None:
    """One patch more than pyproject.toml's pin counts: dist names both versions and builds
    nothing, so no wheel of parsl-saga requires a Parsl that no wheel provides."""
    shutil.copy(REPO / "pyproject.toml", scratch)
    add_patch_that_cannot_apply(scratch)
    count = len((scratch / "patches" / "parsl" / "series").read_text().split())
    result = run_fork(scratch, "dist", "--out", str(scratch / "dist"), check=False)
    assert result.returncode == 1
    assert f"the series makes parsl 2026.10.26+saga.{count}" in result.stderr
    assert f"parsl==2026.10.26+saga.{count - 1}," in result.stderr
    assert not (scratch / "dist").exists()


def test_dist_needs_the_release_number_once_in_the_version_file(scratch: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", scratch)
    toml = scratch / "forks.toml"
    toml.write_text(toml.read_text().replace('version_file = "parsl/version.py"',
                                             'version_file = "setup.py"'))
    result = run_fork(scratch, "dist", "--out", str(scratch / "dist"), check=False)
    assert result.returncode == 1
    assert "parsl/setup.py holds the quoted version '2026.10.26' 0 times" in result.stderr
    assert not (scratch / "dist").exists()
