# The README's commands. Everything installs into .venv/ at the repo root.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test demo bench airflow constraints clean

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	@touch $(STAMP)

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) -m include.local_stack.demo

# Re-resolve the pinned set after changing requirements.txt (run in a fresh venv, then commit constraints.txt).
constraints: setup
	$(PY) -m pip freeze --exclude-editable | grep -v '^pip==' > constraints.txt

clean:
	rm -rf $(VENV) .airflow-local demo-output .pytest_cache

# The scale benchmark (bench/README.md); options through BENCH_ARGS, e.g. BENCH_ARGS="--variants 100000".
bench: setup
	$(PY) -m bench $(BENCH_ARGS)

# Airflow's UI on http://localhost:8080 against the demo world (scheduler, dag-processor, api-server); Ctrl-C stops all.
airflow: setup
	$(PY) -m include.local_stack.airflow_ui
