# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Both create .venv on first use (torch/torchvision pins come from pyproject.toml).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= work/demo

.PHONY: demo test test-clusters lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/selfie demo --workdir $(WORKDIR)

# Two xdist workers: the Ray tests together on one, the other files beside them (the Ray
# tests leave about a third of the two cores idle; tests/conftest.py makes the groups).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not cluster" -n 2 --dist loadgroup --durations=15

# The tests that start Ray clusters of their own (two nodes, unequal nodes, a head that dies,
# the CLI's own local head): minutes of Ray start-ups, so apart; CI runs them after `make test`.
test-clusters: $(STAMP)
	$(BIN)/python -m pytest -q -m cluster --durations=8

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/selfie bench model --preset tiny --json

clean:
	rm -rf $(VENV) work .pytest_cache .ruff_cache
