# The README's commands. Everything installs into .venv/ at the repo root.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test typecheck demo bench bench-fleet airflow constraints clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml dev/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e . -e dev
	@touch $(STAMP)

test: setup typecheck
	$(PY) -m pytest

# The product code (include/statistics_export, plugins/export_hooks, dags) type-checks with the pinned mypy.
typecheck: setup
	$(PY) -m mypy

demo: setup
	$(PY) -m local_stack.demo

# Re-resolve the pinned set after changing requirements.txt (run in a fresh venv, then commit constraints.txt).
constraints: setup
	$(PY) -m pip freeze --exclude-editable | grep -v '^pip==' > constraints.txt

clean:
	rm -rf $(VENV) .airflow-local demo-output .pytest_cache

# The scale benchmark (bench/README.md); options through BENCH_ARGS, e.g. BENCH_ARGS="--variants 100000".
bench: setup
	$(PY) -m bench $(BENCH_ARGS)

# The fleet benchmark (bench/fleet.py): 2,000 small shops against one shop of as many variants, real scheduler.
bench-fleet: setup
	$(PY) -m bench.fleet $(BENCH_ARGS)

# Airflow's UI on http://localhost:8080 against the demo world (scheduler, dag-processor, api-server); Ctrl-C stops all.
airflow: setup
	$(PY) -m local_stack.airflow_ui
