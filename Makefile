# Codiv: two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=

.PHONY: help install deps-up lint typecheck test test-fast run demo bench chaos schemas clean

help:
	@echo "make run    start the whole system locally (PostgreSQL, RabbitMQ, emulator, services)"
	@echo "make test   install everything and run lint, types and all tests"
	@echo "make demo   run the system unattended and check a few posts end to end"
	@echo "make bench  run the benchmarks (long)"
	@echo "make chaos  run the fault-injection suite (long)"

install:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --all-packages

deps-up:
	@bash scripts/ensure-deps.sh

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: install
	$(UV) run mypy

schemas: install
	$(UV) run codiv export-schemas schemas/events

test: install deps-up lint typecheck
	$(UV) run pytest $(PYTEST_ARGS)

test-fast: install
	$(UV) run pytest -x -q $(PYTEST_ARGS)

run: install deps-up
	$(UV) run codiv-dev

demo: install deps-up
	$(UV) run codiv-dev --demo

bench: install deps-up
	$(UV) run python -m benchmarks

chaos: install deps-up
	CODIV_CHAOS_DEPENDENCIES=1 $(UV) run pytest tests/chaos -m chaos -p no:cacheprovider -q -s $(PYTEST_ARGS)

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .run
