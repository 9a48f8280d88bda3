# Fresh clone -> `make demo` or `make test`; each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The versions tested together; see constraints.txt.
CONSTRAINTS := -c constraints.txt

.PHONY: demo test lint format clean help

help:
	@echo "make demo   - create .venv, install, run the pipeline on the bundled sample"
	@echo "make test   - create .venv with test extras, run the test suite"
	@echo "make lint   - ruff check and format check"

$(VENV)/.python-ok:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sediment_xr needs Python 3.11 or newer; run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@touch $@

$(VENV)/.installed: $(VENV)/.python-ok pyproject.toml constraints.txt
	$(PIP) install --quiet $(CONSTRAINTS) -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet $(CONSTRAINTS) -e ".[test]"
	@touch $@

demo: $(VENV)/.installed
	$(BIN)/sediment-xr demo --output demo_output

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check sediment_xr tests benchmarks notebooks
	$(BIN)/ruff format --check sediment_xr tests benchmarks notebooks

format: $(VENV)/.installed-test
	$(BIN)/ruff format sediment_xr tests benchmarks notebooks
	$(BIN)/ruff check --fix sediment_xr tests benchmarks notebooks

clean:
	rm -rf $(VENV) demo_output results .pytest_cache
