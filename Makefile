# shardbeat: `make run` sets up and runs the plugin against the embedded emulator; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROVIDER ?= sls
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
# The suite mostly waits (heartbeat intervals, leases, child processes), so it runs on more pytest-xdist
# workers than there are cores; TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 8

.PHONY: run test lint bench emulator clean

# Two stamps: running needs only shardbeat and its three runtime dependencies; the tests, lint and
# the benchmark also need the dev tools and both cloud SDKs (the `dev` and `sdk` extras).
# Set-up and run print nothing on stdout but records (progress goes to stderr), so `make run | jq .` works.
# An editable install compiles no bytecode (a wheel install does), and with PYTHONDONTWRITEBYTECODE set
# nothing would ever write it: every start would compile the package from source (~60 ms). So set-up
# compiles it once (an edited module is recompiled in memory: bytecode is checked against its source).
$(RUN_STAMP): pyproject.toml
	@echo "setting up $(VENV) to run shardbeat (first run only)..." >&2
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet -e . >&2
	@$(BIN)/python -m compileall -q plugin/shardbeat >&2
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) with the dev tools and SDKs (first run only)..." >&2
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet -e '.[dev,sdk]' >&2
	@$(BIN)/python -m compileall -q plugin/shardbeat >&2
	@touch $(STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	@$(BIN)/shardbeat run --emulator --provider $(PROVIDER)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check plugin tests bench
	$(BIN)/ruff format --check plugin tests bench
	$(BIN)/mypy

# Under 5 minutes on 2 cores; prints PASS/MISS per target of issues 6 and 10 (figures beside the
# baseline before issue 10) and never fails on a MISS.
# Writes bench/results/latest.md and latest.json (the SDK baselines come from the sdk extra).
bench: $(STAMP)
	$(BIN)/python -m bench

emulator: $(RUN_STAMP)
	@$(BIN)/shardbeat emulator --port 8099

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
