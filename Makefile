# Backstop: `make run` and `make test` work on a fresh machine (see README.md).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck infra migrate topics stop down bench venv demo

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "python3.11 is required"; exit 1; }
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

infra: $(STAMP)
	deploy/infra.sh up
	$(BIN)/python -m backstop.cli topics

migrate: infra
	$(BIN)/python -m backstop.migrate

run: migrate
	$(BIN)/python -m deploy.run

stop:
	$(BIN)/python -m deploy.run --stop || true

down: stop
	deploy/infra.sh down

lint: $(STAMP)
	$(BIN)/ruff check backstop services tests bench deploy
	$(BIN)/ruff format --check backstop services tests bench deploy

typecheck: $(STAMP)
	$(BIN)/mypy backstop services deploy

test: infra lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: migrate
	$(BIN)/python -m bench
