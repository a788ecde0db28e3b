# Backstop: `make run` and `make test` work on a fresh machine (see README.md).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# `make test` runs its own broker, started empty, so test topics never load down the one
# `make run` uses; KAFKA_BOOTSTRAP_SERVERS given -> the tests use that broker instead.
TEST_KAFKA_PORT ?= 9192
TEST_KAFKA := BACKSTOP_KAFKA_PORT=$(TEST_KAFKA_PORT) BACKSTOP_KAFKA_NODE=kafka-test
TEST_KAFKA_SERVERS := $(or $(KAFKA_BOOTSTRAP_SERVERS),127.0.0.1:$(TEST_KAFKA_PORT))

.PHONY: run test test-infra lint typecheck infra migrate topics stop down reset asyncapi bench venv demo

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

# Asks first; then the services stop and their databases and topics are emptied.
reset: infra
	$(BIN)/python -m deploy.reset

lint: $(STAMP)
	$(BIN)/ruff check backstop services tests bench deploy
	$(BIN)/ruff format --check backstop services tests bench deploy

typecheck: $(STAMP)
	$(BIN)/mypy backstop services deploy

test-infra: $(STAMP)
	$(TEST_KAFKA) BACKSTOP_KAFKA_FRESH=1 deploy/infra.sh up

test: test-infra lint typecheck
	KAFKA_BOOTSTRAP_SERVERS=$(TEST_KAFKA_SERVERS) $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# docs/asyncapi.yaml from the registry of event payloads (a test fails when it is stale).
asyncapi: $(STAMP)
	$(BIN)/python -m backstop.asyncapi

bench: migrate
	$(BIN)/python -m bench
