# Two doors: `make demo` (set up, then run the whole loop offline on the built-in tiny models) and `make test`
# (set up, then lint and run the test suite). Both create ./.venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.artaug-installed
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# The constraints file pins the torch/torchvision pair so that no dependency pulls another torch.
$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt torch torchvision
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev,vision,data,serve,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/artaug demo --output runs/demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

test: lint
	$(BIN)/python -m pytest -n 2 --timeout 900 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
