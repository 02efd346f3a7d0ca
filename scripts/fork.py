"""Turn "pinned upstream sdist + patch series" into a git fork tree, and back.

Each fork named in ``forks.toml`` (``parsl``, ``saga``) lives in two forms:

* ``patches/<fork>/``: the source of truth, an ordered ``git format-patch`` series
  plus a ``series`` file listing it;
* ``<fork>/``: a generated, git-ignored git repository holding the pinned sdist as one
  commit tagged ``upstream`` and one commit per patch on top.

Subcommands: ``materialize``, ``export``, ``check``, ``rebase-check``, ``build`` and ``dist``.
Run ``python scripts/fork.py --help`` or see CLAUDE.md for the workflow.

``dist`` builds wheels of the forks and of the project. Each fork's wheel carries the
local version ``<pinned version>+saga.<number of patches>`` (see :func:`fork_version`),
written into a fresh tree built from ``patches/`` in a temporary directory: the series,
the materialized trees and ``make check`` never see it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "sdists"
INDEX_URL = os.environ.get("PARSL_SAGA_INDEX_URL", "https://pypi.org/simple")
UPSTREAM_TAG = "upstream"
STATE_FILE = "parsl-saga-series"
# The local version label of the forks' wheels: <upstream version>+saga.<patches>.
LOCAL_LABEL = "saga"
# The distributions that `dist` builds, as their wheel file names spell them.
PROJECT = "parsl-saga"
# Generated files that an editable install or a test run writes into a fork tree.
# What builds and Parsl's own test suite write into the tree (some of its tests write to
# the working directory), so that a test run never reads as uncommitted work.
IGNORED_IN_TREE = ["*.egg-info/", "build/", "__pycache__/", ".pytest_cache/", "runinfo/",
                   "pytest-parsl/", ".mypy_cache/", "/interchange.log", "/retry.out",
                   "/succeed.out"]
# A fixed identity and date for the upstream commit, so that its hash is reproducible.
UPSTREAM_IDENTITY = {
    "GIT_AUTHOR_NAME": "upstream", "GIT_AUTHOR_EMAIL": "upstream@pypi.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "upstream", "GIT_COMMITTER_EMAIL": "upstream@pypi.invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}
# git am records the committer; CI machines may have no git identity configured.
COMMITTER = {"GIT_COMMITTER_NAME": "parsl-saga fork tool",
             "GIT_COMMITTER_EMAIL": "fork-tool@parsl-saga.invalid"}


class ForkError(Exception):
    """A failure with a message that names the problem and how to fix it."""


@dataclass(frozen=True)
class Pin:
    fork: str
    distribution: str
    version: str
    sha256: str | None
    version_file: str | None = None

    @property
    def tree(self) -> Path:
        return ROOT / self.fork

    @property
    def patch_dir(self) -> Path:
        return ROOT / "patches" / self.fork


def load_pins() -> dict[str, Pin]:
    with open(ROOT / "forks.toml", "rb") as f:
        raw = tomllib.load(f)
    return {name: Pin(name, entry["distribution"], entry["version"], entry["sha256"],
                      entry.get("version_file"))
            for name, entry in raw.items()}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **COMMITTER, **(env or {})}
    result = subprocess.run(["git", *args], cwd=cwd, env=full_env, text=True,
                            capture_output=True)
    if check and result.returncode != 0:
        raise ForkError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr.strip()}")
    return result


# --- fetching and verifying sdists -------------------------------------------------

def _normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def index_entry(distribution: str, version: str) -> tuple[str, str]:
    """Return (url, sha256) of the sdist of ``distribution==version`` on the index."""
    url = f"{INDEX_URL}/{_normalized(distribution)}/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response)["files"]
    except (urllib.error.URLError, TimeoutError) as exc:
        raise ForkError(f"cannot reach the package index {url}: {exc}. Check the network, or "
                        "set PARSL_SAGA_INDEX_URL to a reachable PEP 691 simple index.") from exc
    stem = re.sub(r"[-.]+", "_", distribution).lower()
    wanted = {f"{stem}-{version}.tar.gz", f"{distribution}-{version}.tar.gz"}
    for entry in files:
        if entry["filename"].lower() in wanted:
            return entry["url"], entry["hashes"]["sha256"]
    raise ForkError(f"{distribution} {version} has no sdist on {url}. "
                    "Check the version against the release list on PyPI.")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(distribution: str, version: str, expected_sha256: str | None) -> Path:
    """The verified sdist from the cache, downloading it once if it is missing.

    With no pinned hash (``rebase-check`` against a new release) the index's hash is
    used. A mismatch is an error and the file is kept aside for inspection, never
    silently downloaded again.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = CACHE / f"{_normalized(distribution)}-{version}.tar.gz"
    if not cached.exists():
        url, index_sha256 = index_entry(distribution, version)
        expected_sha256 = expected_sha256 or index_sha256
        partial = cached.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=300) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, TimeoutError) as exc:
            partial.unlink(missing_ok=True)
            raise ForkError(f"cannot download {url}: {exc}") from exc
        partial.rename(cached)
    actual = sha256_of(cached)
    if expected_sha256 is not None and actual != expected_sha256:
        rejected = cached.with_suffix(".rejected")
        cached.rename(rejected)
        raise ForkError(f"sha256 mismatch for {distribution} {version}: expected "
                        f"{expected_sha256}, got {actual} (file moved to {rejected}). "
                        "If the pin in forks.toml is wrong, correct it; otherwise the index "
                        "served a different file and must not be trusted.")
    return cached


# --- building fork trees -------------------------------------------------------------

def series(pin: Pin) -> list[Path]:
    """The committed patches of ``pin``, in order."""
    series_file = pin.patch_dir / "series"
    if not series_file.exists():
        return []
    names = [line.strip() for line in series_file.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    missing = [n for n in names if not (pin.patch_dir / n).exists()]
    if missing:
        raise ForkError(f"{series_file} lists missing patch files: {', '.join(missing)}")
    return [pin.patch_dir / n for n in names]


def series_digest(pin: Pin) -> str:
    digest = hashlib.sha256(f"{pin.distribution}=={pin.version}\n".encode())
    for patch in series(pin):
        digest.update(patch.name.encode() + b"\0" + patch.read_bytes())
    return digest.hexdigest()


def unpack_upstream(sdist: Path, dest: Path, label: str) -> None:
    """Make ``dest`` a git repo whose single commit, tagged upstream, is the sdist."""
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        top = os.path.commonpath(tar.getnames())
        tar.extractall(dest.parent / ".unpack", filter="data")
    for item in (dest.parent / ".unpack" / top).iterdir():
        item.rename(dest / item.name)
    shutil.rmtree(dest.parent / ".unpack")
    for egg_info in dest.rglob("*.egg-info"):
        shutil.rmtree(egg_info)  # generated metadata; an editable install rewrites it
    git(dest, "init", "--quiet", "--initial-branch=main")
    (dest / ".git" / "info" / "exclude").write_text("\n".join(IGNORED_IN_TREE) + "\n")
    git(dest, "add", "--all")
    git(dest, "commit", "--quiet", "--no-verify", "-m", f"Upstream {label}", env=UPSTREAM_IDENTITY)
    git(dest, "tag", UPSTREAM_TAG)


def failed_patch_report(tree: Path, output: str) -> str:
    files = sorted(set(re.findall(r"(?:patch failed|Merge conflict in|does not exist in index)"
                                  r":? ([^\s:]+)", output)))
    return ", ".join(files) or output.strip().splitlines()[-1]


def apply_series(tree: Path, patches: list[Path]) -> None:
    for patch in patches:
        result = git(tree, "am", "--quiet", "--keep-cr", str(patch), check=False)
        if result.returncode != 0:
            files = failed_patch_report(tree, result.stdout + result.stderr)
            git(tree, "am", "--abort", check=False)
            raise ForkError(f"patch {patch.relative_to(ROOT)} does not apply; "
                            f"failing hunk in: {files}. Rebase it onto the pinned upstream "
                            "(see README, 'Rebasing onto a new Parsl').")


def tree_state(pin: Pin) -> tuple[str, str] | None:
    state = pin.tree / ".git" / STATE_FILE
    if not state.exists():
        return None
    digest, head = state.read_text().split()
    return digest, head


def head_of(tree: Path) -> str:
    return git(tree, "rev-parse", "HEAD").stdout.strip()


def refuse_to_discard_work(pin: Pin) -> None:
    rel = pin.fork
    dirty = git(pin.tree, "status", "--porcelain").stdout.strip()
    if dirty:
        raise ForkError(f"{rel}/ has uncommitted changes:\n{dirty}\nCommit them in {rel}/ and "
                        f"run `make export`, or discard them (git -C {rel} stash), then retry.")
    state = tree_state(pin)
    if state is None or state[1] != head_of(pin.tree):
        raise ForkError(f"{rel}/ has commits that are not in patches/{rel}/. Run `make export` "
                        f"to keep them, or `make materialize FORCE=1` to throw them away.")


def build_tree(pin: Pin, dest: Path, patches: int | None = None) -> None:
    """The pinned sdist in *dest* with the series applied, or only its first *patches*."""
    sdist = fetch_sdist(pin.distribution, pin.version, pin.sha256)
    unpack_upstream(sdist, dest, f"{pin.distribution} {pin.version}")
    apply_series(dest, series(pin)[:patches])


def materialize(pin: Pin, force: bool) -> str:
    digest = series_digest(pin)
    if (pin.tree / ".git").exists():
        state = tree_state(pin)
        up_to_date = state is not None and state == (digest, head_of(pin.tree))
        if up_to_date and not git(pin.tree, "status", "--porcelain").stdout.strip():
            return f"{pin.fork}/ is up to date ({len(series(pin))} patches)"
        if not force:
            refuse_to_discard_work(pin)
    elif pin.tree.exists() and any(pin.tree.iterdir()):
        raise ForkError(f"{pin.fork}/ exists but is not a fork tree; move it away and retry.")
    with tempfile.TemporaryDirectory(dir=ROOT, prefix=f".{pin.fork}-build-") as tmp:
        staged = Path(tmp) / pin.fork
        build_tree(pin, staged)
        (staged / ".git" / STATE_FILE).write_text(f"{digest} {head_of(staged)}\n")
        # Swap in place of the old tree only once the new one is complete.
        if pin.tree.exists():
            shutil.rmtree(pin.tree)
        staged.rename(pin.tree)
    return f"{pin.fork}/ built: {pin.distribution} {pin.version} + {len(series(pin))} patches"


# --- exporting and checking ----------------------------------------------------------

def format_patches(tree: Path, out_dir: Path) -> None:
    """Write the commits after ``upstream`` as patch files plus a ``series`` file.

    ``--zero-commit`` and ``--no-signature`` keep the output free of commit hashes
    and git versions, and ``--no-numbered`` keeps "[PATCH n/m]" out of subjects so
    adding a patch does not rewrite the others: exporting twice gives identical files.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("*.patch"), out_dir / "series"]:
        stale.unlink(missing_ok=True)
    git(tree, "format-patch", "--quiet", "--zero-commit", "--no-signature", "--no-numbered",
        "--full-index", "-o", str(out_dir), f"{UPSTREAM_TAG}..HEAD")
    names = sorted(p.name for p in out_dir.glob("*.patch"))
    (out_dir / "series").write_text("".join(f"{n}\n" for n in names))


def export(pin: Pin) -> str:
    if not (pin.tree / ".git").exists():
        raise ForkError(f"{pin.fork}/ does not exist; run `make materialize` first.")
    dirty = git(pin.tree, "status", "--porcelain").stdout.strip()
    if dirty:
        raise ForkError(f"{pin.fork}/ has uncommitted changes; commit them first:\n{dirty}")
    format_patches(pin.tree, pin.patch_dir)
    (pin.tree / ".git" / STATE_FILE).write_text(f"{series_digest(pin)} {head_of(pin.tree)}\n")
    return f"patches/{pin.fork}/: {len(series(pin))} patches exported"


def differing_files(left: Path, right: Path) -> list[str]:
    names = {p.name for p in left.iterdir()} | {p.name for p in right.iterdir()}
    return sorted(n for n in names
                  if not (left / n).exists() or not (right / n).exists()
                  or (left / n).read_bytes() != (right / n).read_bytes())


def check(pin: Pin) -> str:
    """The series applies to the pinned sdist and re-exports to the committed bytes."""
    with tempfile.TemporaryDirectory(prefix=f"fork-check-{pin.fork}-") as tmp:
        build_tree(pin, Path(tmp) / "tree")
        format_patches(Path(tmp) / "tree", Path(tmp) / "fresh")
        pin.patch_dir.mkdir(parents=True, exist_ok=True)
        stale = differing_files(Path(tmp) / "fresh", pin.patch_dir)
        if stale:
            raise ForkError(f"patches/{pin.fork}/ is not a clean export; differing: "
                            f"{', '.join(stale)}. Run `make materialize` then `make export`.")
        if (pin.tree / ".git").exists():
            format_patches(pin.tree, Path(tmp) / "working")
            unexported = differing_files(Path(tmp) / "working", pin.patch_dir)
            if unexported:
                raise ForkError(f"{pin.fork}/ has commits that differ from patches/{pin.fork}/ "
                                f"({', '.join(unexported)}). Run `make export`.")
    return (f"patches/{pin.fork}/: {len(series(pin))} patches apply to {pin.version} "
            "and export cleanly")


@dataclass(frozen=True)
class PatchOutcome:
    patch: str
    outcome: str  # "clean", "clean (3-way merge)" or "conflict"
    files: str = ""


def rebase_outcomes(pin: Pin, version: str) -> list[PatchOutcome]:
    sdist = fetch_sdist(pin.distribution, version, pin.sha256 if version == pin.version else None)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix=f"fork-rebase-{pin.fork}-") as tmp:
        tree = Path(tmp) / "tree"
        unpack_upstream(sdist, tree, f"{pin.distribution} {version}")
        for patch in series(pin):
            plain = git(tree, "am", "--quiet", str(patch), check=False)
            if plain.returncode == 0:
                outcomes.append(PatchOutcome(patch.name, "clean"))
                continue
            git(tree, "am", "--abort", check=False)
            merged = git(tree, "am", "--quiet", "--3way", str(patch), check=False)
            if merged.returncode == 0:
                outcomes.append(PatchOutcome(patch.name, "clean (3-way merge)"))
                continue
            files = failed_patch_report(tree, merged.stdout + merged.stderr + plain.stderr)
            outcomes.append(PatchOutcome(patch.name, "conflict", files))
            git(tree, "am", "--abort", check=False)
    return outcomes


def rebase_check(pin: Pin, version: str) -> str:
    outcomes = rebase_outcomes(pin, version)
    lines = [f"{pin.fork}: series of {len(outcomes)} patches against "
             f"{pin.distribution} {version}"]
    lines += [f"  {o.outcome:<20} {o.patch}" + (f"  [{o.files}]" if o.files else "")
              for o in outcomes]
    conflicts = sum(o.outcome == "conflict" for o in outcomes)
    lines.append(f"  {len(outcomes) - conflicts} clean, {conflicts} conflicting")
    return "\n".join(lines)


# --- wheels ------------------------------------------------------------------------

def fork_version(pin: Pin) -> str:
    """The fork's PEP 440 version: the pinned release with the local label
    ``saga.<number of patches>``, e.g. ``2026.10.26+saga.18``. Only ``==`` matches a local
    version exactly, so a requirement on it can never be met by the upstream release."""
    return f"{pin.version}+{LOCAL_LABEL}.{len(series(pin))}"


def stamp_version(pin: Pin, tree: Path) -> str:
    """Replace the quoted release number in ``tree``'s version file with the fork's."""
    if pin.version_file is None:
        raise ForkError(f"forks.toml names no version_file for [{pin.fork}]: add the file "
                        "that holds its quoted release number, e.g. parsl/version.py.")
    path = tree / pin.version_file
    text = path.read_bytes()  # bytes: keep the file's line endings
    quoted = re.compile(rb"""(['"])""" + re.escape(pin.version.encode()) + rb"\1")
    found = quoted.findall(text)
    if len(found) != 1:
        raise ForkError(f"{pin.fork}/{pin.version_file} holds the quoted version "
                        f"{pin.version!r} {len(found)} times, not once; correct version_file "
                        "in forks.toml.")
    version = fork_version(pin)
    path.write_bytes(quoted.sub(lambda m: m[1] + version.encode() + m[1], text))
    return version


def requirement_specifiers(pyproject: Path, distribution: str) -> list[str]:
    """The version specifiers of every requirement on ``distribution`` in the project's
    dependencies and extras (spaces removed; "" for an unpinned requirement)."""
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    specifiers = []
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^]]*\])?\s*([^;]*)",
                         requirement)
        if match and _normalized(match[1]) == _normalized(distribution):
            specifiers.append(re.sub(r"\s+", "", match[3]))
    return specifiers


def check_project_pins(pins: list[Pin], pyproject: Path) -> None:
    """The project requires exactly the forks' versions, so its wheel cannot be installed
    with an upstream release, nor with a wheel of another series."""
    for pin in pins:
        wanted = f"=={fork_version(pin)}"
        wrong = [s for s in requirement_specifiers(pyproject, pin.distribution) if s != wanted]
        if wrong:
            raise ForkError(f"pyproject.toml requires {pin.distribution}{wrong[0] or ' (any)'}, "
                            f"but the series makes {pin.distribution} {fork_version(pin)}: "
                            f"require {pin.distribution}{wanted} there (uv.lock records no version "
                            "for the fork trees, so it stays as it is).")


def build_wheel(source: Path, out_dir: Path, *extra: str) -> Path:
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names itself in $UV
    if uv is None:
        raise ForkError("`uv` is not on PATH; run `make uv` (make dist does) and retry.")
    before = set(out_dir.glob("*.whl"))
    result = subprocess.run([uv, "build", "--wheel", "--quiet", "--python", "3.12",
                             "--out-dir", str(out_dir), *extra, str(source)],
                            cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
    built = set(out_dir.glob("*.whl")) - before
    if result.returncode != 0 or len(built) != 1:
        raise ForkError(f"building a wheel of {source} failed:\n"
                        f"{(result.stderr or result.stdout).strip()}")
    return built.pop()


def wheel_prefix(distribution: str) -> str:
    return re.sub(r"[-_.]+", "_", distribution).lower() + "-"


def dist(pins: list[Pin], out_dir: Path) -> list[Path]:
    """Build the forks' wheels from ``patches/`` (not from the working trees) and the
    project's wheel, then replace the earlier wheels of these distributions in ``out_dir``
    with them, so that ``pip install out_dir/*.whl`` never meets two versions."""
    check_project_pins(pins, ROOT / "pyproject.toml")
    with tempfile.TemporaryDirectory(prefix="fork-dist-") as tmp:
        wheels_dir = Path(tmp) / "wheels"
        wheels_dir.mkdir()
        for pin in pins:
            tree = Path(tmp) / pin.fork
            build_tree(pin, tree)
            stamp_version(pin, tree)
            build_wheel(tree, wheels_dir)
        build_wheel(ROOT, wheels_dir, "--no-sources")
        out_dir.mkdir(parents=True, exist_ok=True)
        prefixes = tuple(wheel_prefix(d) for d in [*(p.distribution for p in pins), PROJECT])
        for old in out_dir.glob("*.whl"):
            if old.name.lower().startswith(prefixes):
                old.unlink()
        wheels = []
        for wheel in sorted(wheels_dir.glob("*.whl")):
            wheels.append(out_dir / wheel.name)
            shutil.move(wheel, wheels[-1])
    return wheels


# --- command line --------------------------------------------------------------------

@contextmanager
def reported_errors() -> Iterator[None]:
    try:
        yield
    except ForkError as exc:
        print(f"fork: error: {exc}", file=sys.stderr)
        sys.exit(1)


def selected(pins: dict[str, Pin], names: list[str]) -> list[Pin]:
    unknown = [n for n in names if n not in pins]
    if unknown:
        raise ForkError(f"unknown fork {', '.join(unknown)}; forks.toml defines "
                        f"{', '.join(pins)}")
    return [pins[n] for n in names or pins]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [("materialize", "build the fork trees from the pinned sdists"),
                            ("export", "write the fork trees' commits to patches/"),
                            ("check", "verify that patches/ applies and is a clean export")]:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("forks", nargs="*", help="forks to act on (default: all)")
        if name == "materialize":
            cmd.add_argument("--force", action="store_true",
                             help="rebuild even if the tree has unexported work")
    rebase = sub.add_parser("rebase-check", help="try the series on another upstream release")
    rebase.add_argument("version", help="the upstream release to try, e.g. 2026.11.2")
    rebase.add_argument("--fork", default="parsl", help="which fork (default: parsl)")
    build = sub.add_parser("build", help="the pinned sdist and the series' first N patches in "
                                         "a new directory (for benchmarks against upstream)")
    build.add_argument("dest", type=Path, help="where; must not exist")
    build.add_argument("--fork", default="parsl", help="which fork (default: parsl)")
    build.add_argument("--patches", type=int, default=None, help="how many (default: all)")
    dist_cmd = sub.add_parser("dist", help="build wheels of the forks and the project")
    dist_cmd.add_argument("--out", type=Path, default=ROOT / "dist",
                          help="directory for the wheels (default: dist/)")
    args = parser.parse_args(argv)

    with reported_errors():
        pins = load_pins()
        if args.command == "rebase-check":
            print(rebase_check(selected(pins, [args.fork])[0], args.version))
            return
        if args.command == "build":
            build_tree(selected(pins, [args.fork])[0], args.dest, args.patches)
            print(f"built {args.dest}")
            return
        if args.command == "dist":
            for wheel in dist(list(pins.values()), args.out):
                print(f"built {wheel}")
            return
        for pin in selected(pins, args.forks):
            if args.command == "materialize":
                print(materialize(pin, args.force))
            elif args.command == "export":
                print(export(pin))
            else:
                print(check(pin))


if __name__ == "__main__":
    main()
