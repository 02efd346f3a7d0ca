# parsl-saga: every command a contributor or CI needs. See README.md and CLAUDE.md.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
# Use the machine's Python 3.12; never download an interpreter.
export UV_PYTHON_DOWNLOADS := never
UV_VERSION := 0.13.9
FORK := uv run --no-project --python 3.12 python scripts/fork.py
RUN := uv run --locked
PARSL_SUITE := $(RUN) python scripts/parsl_suite.py

.PHONY: help uv materialize export check check-patches rebase-check sync lint lint-fork \
        test test-project test-saga test-parsl test-upstream upstream-baseline demo clean \
        bench bench-quick dist slurm-deps

help:
	@echo "make demo | test | dist | bench [QUICK=1] | test-upstream | materialize | export | check | rebase-check VERSION=… [SERIES=saga] | lint"

uv:
	@uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"

## Fork trees: parsl/ and saga/ = pinned sdist + patches/<fork>/ (scripts/fork.py)
materialize: uv
	@$(FORK) materialize $(if $(FORCE),--force)

export: uv
	@$(FORK) export

check check-patches: uv
	@$(FORK) check

rebase-check: uv
	@test -n "$(VERSION)" || { echo "usage: make rebase-check VERSION=2026.11.2 [SERIES=saga]"; exit 2; }
	@$(FORK) rebase-check $(VERSION) --fork $(or $(SERIES),parsl)

sync: materialize
	@uv sync --locked --quiet

# Wheels for pip (README, "Install into your own environment"): the Parsl and SAGA forks,
# built from patches/ with the local version <release>+saga.<number of patches>, and
# parsl-saga, which requires exactly that Parsl. Replaces the earlier ones in dist/.
dist: uv
	@$(FORK) dist --out dist

## Checks
lint: sync
	$(RUN) ruff check
	$(MAKE) --no-print-directory lint-fork

# Upstream Parsl's own checks on the files our Parsl series adds or changes: flake8 with
# its settings (.flake8), isort with the black profile its imports follow, and mypy with
# its global settings (mypy-parsl.ini) on the non-test modules, less the errors upstream
# itself has (tests/upstream-baseline/mypy.txt).
lint-fork:
	@files=$$(git -C parsl diff --name-only --diff-filter=AM upstream HEAD -- 'parsl/*.py'); \
	modules=$$(printf '%s\n' $$files | grep -v '^parsl/tests/' || true); \
	if [ -n "$$files" ]; then \
	  cd parsl && ../.venv/bin/flake8 --config ../.flake8 $$files \
	    && ../.venv/bin/isort --check --profile black $$files \
	    && if [ -n "$$modules" ]; then \
	      out=$$(../.venv/bin/mypy --config-file ../mypy-parsl.ini $$modules || true); \
	      new=$$(printf '%s\n' "$$out" | sed -E 's/:[0-9]+: /: /' | grep ': error:' \
	             | grep -v -x -F -f ../tests/upstream-baseline/mypy.txt || true); \
	      if [ -n "$$new" ]; then printf '%s\n' "$$new"; exit 1; fi; \
	      echo "mypy: no errors beyond upstream's own"; \
	    fi; \
	fi

test: sync
	@$(MAKE) --no-print-directory check lint slurm-deps test-project test-saga test-parsl

# Slurm and munge for the Slurm cluster tests (tests/test_slurm_cluster.py), installed
# only as root. Elsewhere, or when the install fails, those tests skip and say why.
slurm-deps:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "slurm-deps: not root, so Slurm is not installed; the Slurm cluster tests will skip"; \
	elif ! scripts/setup_slurm.sh; then \
	  echo "slurm-deps: WARNING: Slurm could not be installed; the Slurm cluster tests will skip"; \
	fi

test-project:
	$(RUN) pytest tests

# SAGA's tests that our series adds or changes.
test-saga:
	@files=$$(git -C saga diff --name-only --diff-filter=AM upstream HEAD -- 'tests/*.py'); \
	if [ -n "$$files" ]; then cd saga && ../.venv/bin/python -m pytest -q -p no:cacheprovider $$files; fi

# A fast, relevant part of Parsl's own suite, compared with the pinned upstream.
test-parsl:
	$(PARSL_SUITE) compare fast

# Parsl's whole local suite (long: about an hour on 2 cores).
test-upstream: sync
	$(PARSL_SUITE) compare full

# Re-record which of Parsl's tests fail on the pinned upstream itself.
upstream-baseline: sync
	$(PARSL_SUITE) baseline fast
	$(PARSL_SUITE) baseline full

# A diamond DAG planned with HEFT on the local multi-node cluster, then the LLC workflow.
demo: sync
	$(RUN) python -P scripts/plan_workflow.py --out out/demo-plan
	$(RUN) lambda-hat run config/small.yaml

# Benchmarks (issue 8): run them all, write bench/results/*.json and docs/benchmarks.md.
# Long (about an hour); QUICK=1 (or bench-quick) takes a few minutes. Run on a quiet machine.
# Plain scripts, not -P: Python puts bench/ (no parsl/ there) on their path for common.py.
bench: sync
	$(RUN) --group bench python bench/run.py $(if $(QUICK),--quick)

bench-quick:
	@$(MAKE) --no-print-directory bench QUICK=1

clean:
	rm -rf .venv .cache/baseline
