# cover-id: `make demo` and `make test` work on a fresh machine (they create .venv first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: venv demo test lint format bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/make_examples.py
	$(VENV)/bin/cover-id index --refs examples/covers --out examples/index --encoder local
	$(VENV)/bin/cover-id info examples/index
	$(VENV)/bin/cover-id identify examples/photos --index examples/index
	$(VENV)/bin/cover-id identify examples/photos/two_covers_castle_and_ocean.jpg --index examples/index --multi

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# ruff (lint + format check) and mypy, configured in pyproject.toml; CI runs it after the tests.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)
	$(PY) benchmarks/cli_startup.py
	$(PY) benchmarks/index_speed.py
	$(PY) benchmarks/accuracy.py
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/serve_load.py
	$(PY) benchmarks/train_gain.py

clean:
	rm -rf $(VENV) examples/index .pytest_cache
