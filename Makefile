# paywarden: the two commands a new machine needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE_POLICY := src/paywarden/examples/treasury_policy.yaml

.PHONY: run demo test lint typecheck unit install bench bench-http bench-cli clean

# `dev` brings every extra (`all`: server, mcp, stripe) and the test tools.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: the gateway on ./paywarden.db with the example policy and the sandbox rail.
run: $(STAMP)
	$(BIN)/paywarden serve --database paywarden.db --policy $(EXAMPLE_POLICY)

## The seed scenarios, decided by the real engine and printed.
demo: $(STAMP)
	$(BIN)/paywarden demo

## The whole test suite: lint, format check, strict typing, then every test tier.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py

## Authorizations per second over HTTP on loopback (32 clients); see docs/benchmarks.md.
bench-http: $(STAMP)
	$(BIN)/python bench/http_gateway.py

## Start-up of the `paywarden` command, each run a fresh process; see docs/benchmarks.md.
bench-cli: $(STAMP)
	$(BIN)/python bench/cli_startup.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
