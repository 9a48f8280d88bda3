# Fresh clone -> `make demo` or `make test`; each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The versions tested together; see constraints.txt.
CONSTRAINTS := -c constraints.txt
# CI also tests the SPEC 0 floors (constraints-min.txt) on the oldest Python we support and
# the newest releases on the newest Python; each in its own throw-away venv.
PYTHON_MIN    ?= $(PYTHON)
# The first Python 3.13 that runs (a pyenv shim may exist without it being selected).
PYTHON_NEWEST ?= $(shell for p in python3.13 /root/.pyenv/versions/3.13*/bin/python3.13 \
	/usr/local/bin/python3.13 /usr/bin/python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo $$p; break; }; \
	done)
NEED_PYTHON_NEWEST = @test -n "$(PYTHON_NEWEST)" || { echo "no Python 3.13 found: make PYTHON_NEWEST=/path/to/python3.13 $@"; exit 2; }

.PHONY: demo test test-min test-newest hub-check lint format clean help

help:
	@echo "make demo   - create .venv, install, run the pipeline on the bundled sample"
	@echo "make test   - create .venv with test extras, run the test suite"
	@echo "make lint   - ruff check and format check"
	@echo "make test-min     - the test suite at the minimum versions (.venv-min)"
	@echo "make test-newest  - the test suite at the newest releases on Python 3.13 (.venv-newest)"
	@echo "make hub-check    - plain pip install (no extras) on Python 3.13 with pandas 2.x,"
	@echo "                    then the default config on the bundled frames (.venv-hub)"

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

test-min:
	rm -rf .venv-min
	$(PYTHON_MIN) -m venv .venv-min
	.venv-min/bin/python -m pip install --quiet --upgrade pip
	.venv-min/bin/python -m pip install --quiet -c constraints-min.txt -e ".[test]"
	.venv-min/bin/python -m pip freeze --exclude-editable > .venv-min/versions.txt
	.venv-min/bin/python -m pytest -p no:cacheprovider

test-newest:
	$(NEED_PYTHON_NEWEST)
	rm -rf .venv-newest
	$(PYTHON_NEWEST) -m venv .venv-newest
	.venv-newest/bin/python -m pip install --quiet --upgrade pip
	.venv-newest/bin/python -m pip install --quiet --upgrade -e ".[test]"
	.venv-newest/bin/python -m pip freeze --exclude-editable > .venv-newest/versions.txt
	.venv-newest/bin/python -m pytest -p no:cacheprovider

# What a hub user does: `pip install sediment_xr` into an image that has pandas 2 and a recent
# zarr, then runs the default config on the bundled frames.
hub-check:
	$(NEED_PYTHON_NEWEST)
	rm -rf .venv-hub hub_output
	$(PYTHON_NEWEST) -m venv .venv-hub
	.venv-hub/bin/python -m pip install --quiet --upgrade pip
	.venv-hub/bin/python -m pip install --quiet "pandas>=2.2,<3" "zarr>=3.4"
	.venv-hub/bin/python -m pip install --quiet .
	.venv-hub/bin/python -c 'import sys, pandas, zarr; print(sys.version.split()[0], "pandas", pandas.__version__, "zarr", zarr.__version__)'
	cd /tmp && $(CURDIR)/.venv-hub/bin/sediment-xr run $(CURDIR)/configs/shr_frames.yaml --set output=$(CURDIR)/hub_output
	.venv-hub/bin/python -c 'import sediment_xr as sx; sx.open_results("hub_output"); print("hub-check: complete")'

lint: $(VENV)/.installed-test
	$(BIN)/ruff check sediment_xr tests benchmarks notebooks
	$(BIN)/ruff format --check sediment_xr tests benchmarks notebooks

format: $(VENV)/.installed-test
	$(BIN)/ruff format sediment_xr tests benchmarks notebooks
	$(BIN)/ruff check --fix sediment_xr tests benchmarks notebooks

clean:
	rm -rf $(VENV) .venv-min .venv-newest .venv-hub demo_output hub_output results .pytest_cache
