# FreezeFrame: `make demo` runs the embedded default, `make check` the quick checks (lint and the
# unit tests, in parallel; a few minutes), `make test` the whole suite (lint, the unit tests in
# parallel, then the integration tests two at a time, then the `serial` ones alone; about 13 min
# on 2 cores). All (re)create .venv through `make install`, which installs the lock
# (requirements.txt) exactly.
#   tests/unit/         one test file per product module or CLI, mirroring the packages; no Ray
#   tests/integration/  Ray clusters, whole studies as processes, killed drivers, ray up/submit/
#                       down, wheel installs: two at a time, then the `serial` ones alone (they
#                       time trials, or need port 6379)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements.txt
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

# Unit-test workers (pytest-xdist): one per core by default; UNIT_JOBS=0 runs them in this process.
# worksteal: a worker that runs out of tests takes queued ones from a worker still busy with a
# long one (test_both_loops_reach_the_same_validation_dice takes minutes on one core).
UNIT_JOBS ?= auto
# Integration-test workers for the tests not marked `serial` (two measured 1.7x faster than one on
# 2 cores: they mostly wait on Ray and on the studies' processes).
INTEGRATION_JOBS ?= 2

.PHONY: install lock demo check test test-latest test-floors lint format clean gpu-kit

install: $(VENV)/.installed

# Exactly the lock: every package at its pinned version, checked against its hashes (pip refuses
# a requirement the lock lacks), then pip-sync removes anything the lock does not list; then
# FreezeFrame itself, editable, adding nothing. torch is in the lock (cluster/constraints.txt
# pins its build when the lock is made).
$(VENV)/.installed: $(LOCK) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(VENV)/bin/pip-sync -q $(LOCK)
	rm -rf freezeframe.egg-info  # a stale one from an in-tree build: Ray workers (cwd = here) read it
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

# Regenerate the lock from pyproject.toml's ranges. A first lock took about 10 min here (pip-compile
# downloads and hashes every file of every pinned release); with pip-tools' cache, seconds. Pins
# that still satisfy the ranges are kept; to bump:
#   make lock LOCK_ARGS=--upgrade                      (everything to the newest allowed)
#   make lock LOCK_ARGS="--upgrade-package optuna"     (one package)
# then `make test`, `make test-latest` and `make test-floors` (README "Installing: the lock").
LOCK_ARGS ?=
lock: install
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
	  --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
	  --no-emit-trusted-host --extra dev -c cluster/constraints.txt $(LOCK_ARGS) \
	  -o $(LOCK) pyproject.toml

demo: install
	$(PY) search/run.py

# pytest exits 5 when it collects no tests: that is a failure too, not an empty success.
define pytest
$(PY) -m pytest $(1); rc=$$?; \
if [ $$rc -eq 5 ]; then echo "make $@: pytest collected no tests in $(1)" >&2; exit 1; fi; \
exit $$rc
endef

# Lint, then the unit tests in parallel (about 2 min on 2 cores).
check: lint
	$(call pytest,tests/unit -n $(UNIT_JOBS) --dist worksteal)

# Lint, the unit tests in parallel, then the integration tests: two at a time (each starts its own
# private Ray on free ports, and most of them wait on processes more than they compute), then
# those marked `serial` alone (-p no:xdist: they time trials against each other, or need port
# 6379). INTEGRATION_JOBS=0 runs them all in this process, one at a time.
test: lint
	$(call pytest,tests/unit -n $(UNIT_JOBS) --dist worksteal)
	$(call pytest,tests/integration -m 'not serial' -n $(INTEGRATION_JOBS) --dist worksteal)
	$(call pytest,tests/integration -m serial -p no:xdist)

# Drift: fresh venvs (pip's cache off) with the newest releases the ranges allow, and with every
# dependency at its lower bound; each runs the unit tests (latest: also the tune/explore stages'
# whole studies and the embedded default). See .ci/fresh_env.
test-latest:
	PYTHON=$(PYTHON) .ci/fresh_env latest

test-floors:
	PYTHON=$(PYTHON) .ci/fresh_env floors

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Wheels (.whl/) and an HC18 subset (.hc18/) for .ci/gpu_check on a lent GPU machine.
gpu-kit: install
	PY=$(PY) .ci/gpu_kit

clean:
	rm -rf $(VENV) .venv-latest .venv-floors .pytest_cache .ruff_cache
