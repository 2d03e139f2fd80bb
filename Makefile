# shardbeat: `make run` sets up and runs the plugin against the embedded emulator; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROVIDER ?= sls
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench emulator clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,sdk]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/shardbeat run --emulator --provider $(PROVIDER)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check plugin tests
	$(BIN)/ruff format --check plugin tests
	$(BIN)/mypy

emulator: $(STAMP)
	$(BIN)/shardbeat emulator --port 8099

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
