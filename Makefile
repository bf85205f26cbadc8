# The two commands of the README: `make demo` (the main job) and `make test` (lint, types, the whole suite).
# Each sets up what it needs: the .venv with federationd installed editable, the broker binary, the services.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_CONTRACT := ../shared/contract/smoke_link.py
# The integration tests mostly wait on brokers and timers: a few workers (each with its own private broker node)
# keep the suite well inside CI's budget on a 2-core machine.
PYTEST_WORKERS ?= 4

.PHONY: all venv services tools lint test unit integration contract demo bench clean

all: test

$(BIN)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,postgresql]'
	touch $@

venv: $(BIN)/.installed

services:
	bash scripts/ensure-services.sh

tools:
	bash scripts/ensure-tools.sh

lint: venv
	$(BIN)/ruff check federationd tests benchmarks scripts
	$(BIN)/mypy federationd

unit: venv
	$(BIN)/pytest tests/unit

integration: venv services
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m integration

# The contract smoke is part of a green `make test`: a missing file is a failure, never a silent skip.
contract: venv services
	@if [ ! -f $(SHARED_CONTRACT) ]; then echo "contract smoke: $(SHARED_CONTRACT) not found" >&2; exit 1; fi
	PROJECT=. $(BIN)/python $(SHARED_CONTRACT)

test: venv services tools lint
	$(BIN)/pytest -n $(PYTEST_WORKERS)
	$(MAKE) --no-print-directory contract

demo: venv services
	PYTHONPATH=. $(BIN)/python scripts/demo.py

bench: venv services
	PYTHONPATH=. $(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
