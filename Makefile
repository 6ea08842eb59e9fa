# Two doors: `make demo` (set up, then run the whole loop offline on the built-in tiny models) and `make test`
# (set up, then lint and run the test suite). Both create ./.venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.artaug-installed
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench clean chromium

setup: $(STAMP) chromium

# The constraints file pins the torch/torchvision pair so that no dependency pulls another torch.
$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt torch torchvision
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev,vision,data,serve,ray,studio,fp8]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/artaug demo --output runs/demo

# The studio's browser test drives Debian's chromium through Playwright (Playwright's own browser download cannot
# work offline): installed with apt-get when /usr/bin/chromium is missing and we are root; otherwise say how.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium (the studio's browser test drives it)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		|| echo "WARNING: apt-get could not install chromium; the studio's browser test will fail" >&2; \
	else \
		echo "WARNING: /usr/bin/chromium is missing and this is not root with apt-get, so it cannot be installed" \
			"here: run 'sudo apt-get update && sudo apt-get install -y chromium', or the studio's browser test fails" >&2; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

test: lint chromium
	$(BIN)/python -m pytest -n 2 --timeout 900 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
