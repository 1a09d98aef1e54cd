# `make test` and `make bench` work on a fresh machine: each creates .venv if missing and installs
# what it needs (reinstalling only when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
EXTRAS ?= test,jax,hub,plot

.PHONY: install test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install arraygpt with its test, jax, hub and plot extras

test: install  ## run the test suite
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install  ## the main job: the quick suite on every usable backend, beside HF and picoGPT
	$(VENV)/bin/arraygpt bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
