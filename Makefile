# `make test` and `make bench` work on a fresh machine: each creates .venv if missing and installs
# what it needs (reinstalling only when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
EXTRAS ?= test,jax,hub,plot
# Both cores: 7.9 min instead of 11.7 for the whole suite on the 2-core CPU (measured 2026-12-02).
PYTEST_ARGS ?= -n 2

.PHONY: install test bench gpu-check clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)  ## create .venv and install arraygpt with its test, jax, hub and plot extras (EXTRAS=...,peers adds llama.cpp)

test: install  ## run the test suite: on both cores, then alone the tests that measure the machine's load
	$(PY) -m pytest $(PYTEST_ARGS) -m "not solo"
	$(PY) -m pytest -m solo

bench: install  ## the main job: the quick suite on every usable backend, beside HF and picoGPT (and llama.cpp, ONNX Runtime with EXTRAS=...,peers)
	$(VENV)/bin/arraygpt bench $(BENCH_ARGS)

gpu-check:  ## on a GPU machine: the prepared GPU check (benchmarks/gpu/check.sh), 7 minutes; OUT=DIR for its files
	bash benchmarks/gpu/check.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
