# FreezeFrame: `make demo` runs the embedded default, `make test` the whole suite.
# Both (re)create .venv through `make install`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The torch build installed first; the project's own ranges accept it (see pyproject.toml).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install demo test lint format clean gpu-kit

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(PY) search/run.py

# pytest exits 5 when it collects no tests: that is a failure too, not an empty success.
test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

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
	rm -rf $(VENV) .pytest_cache .ruff_cache
