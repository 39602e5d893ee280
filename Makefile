# qfleet developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Torch is needed only to convert models (and to build the tiny test model), never to serve.
# 2.13.0 is the CPU build here; set TORCH_SPEC to your platform's wheel elsewhere.
TORCH_SPEC ?= torch==2.13.0

.PHONY: help install test lint demo demo-model demo-tiny clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: $(VENV)/.installed  ## create .venv and install qfleet with every extra

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: install demo-model  ## the quickstart: a worker answers three real jobs with the demo Qwen model
	ops/dev/ensure-redis
	$(BIN)/python -m ops.demo

# Cached in ~/.cache/qfleet/models: only the first run downloads (~480 MB) and converts (~1-3 min).
demo-model: install  ## fetch and convert the demo Qwen model (once per machine)
	$(BIN)/qfleet model pull demo

test: install demo-model  ## lint, then every test, real-model ones too (Redis and PostgreSQL: started if none answers)
	ops/dev/ensure-redis
	ops/dev/ensure-postgres
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: install  ## ruff and mypy only
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo-tiny: install  ## a job through Redis and a worker process, with the tiny test model
	ops/dev/ensure-redis
	$(BIN)/python -m ops.demo --tiny

clean:  ## remove the venv and caches (not the model cache in ~/.cache/qfleet)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
