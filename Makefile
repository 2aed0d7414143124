# CityOps: two commands do all the set-up on a fresh Debian machine with Python 3.11.
#   make demo   install, migrate and seed the Đồng Nai profile on SQLite, serve on :8000
#   make test   install, start what the tests need, run lint, types and the suite (SQLite + PostgreSQL)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install -q -c constraints.txt
PYTEST_ARGS ?=

.PHONY: demo test install install-test web-assets lint typecheck test-sqlite test-postgres bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# Leaflet and ECharts from npm (package-lock.json), copied into the static folder CityOps serves.
web-assets:
	bash scripts/web-assets.sh

demo: install web-assets
	@[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || bash scripts/system-deps.sh fonts
	$(BIN)/cityops demo

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install-test
	$(BIN)/mypy

test-sqlite: install-test web-assets
	bash scripts/system-deps.sh
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

test-postgres: install-test web-assets
	bash scripts/system-deps.sh
	bash scripts/with-postgres.sh $(BIN)/pytest -n 2 $(PYTEST_ARGS)

test: lint typecheck test-sqlite test-postgres

bench: install-test
	$(BIN)/python bench/bench_locate.py
	$(BIN)/python bench/bench_units_search.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
