# Every target does its own set-up on a fresh machine (Python 3.11, Java 17, Maven, make).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_SECONDS ?= 30

.PHONY: all install browser demo test lint typecheck unit bench soak local-up local-down clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check weir tests
	$(BIN)/ruff format --check weir tests

typecheck: $(STAMP)
	$(BIN)/mypy

# Headless Chromium for the streaming page's tests (tests/test_web_ui.py): Debian's package,
# which Playwright drives (Playwright's own browser download is never used).
browser:
	command -v chromium >/dev/null || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends chromium; }

# The whole suite: lint, types, pure-logic tests and the real-broker/PostgreSQL tests.
test: lint typecheck browser
	$(BIN)/python -m pytest -q

unit: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "not broker and not postgres"

# Starts local Kafka and PostgreSQL, runs exercise 5's funnel (weir.agents.funnel) over generated
# traffic with a live dashboard, checks its Delta and Parquet outputs (exit 1 if they disagree).
demo: $(STAMP)
	$(BIN)/weir local up
	$(BIN)/weir demo --seconds $(DEMO_SECONDS); status=$$?; $(BIN)/weir local down; exit $$status

# Performance (not part of `make test`): own local broker, table + bench/results.json.
# BENCH_QUICK=1 for a few-minute run; BENCH_RECORDS, BENCH_RUNS, BENCH_PROFILE=1 (see bench/).
# The Kafka Streams peer (bench/kstreams) is built by the bench itself with Maven (Java 17)
# into ~/.cache/weir/bench-kstreams, once per change of its sources.
QUIX_VENV := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/weir/bench-quixstreams-venv
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --quiet 'quixstreams>=3.0' || echo "quixstreams not installable; the bench records it"
	BENCH_QUIX_PYTHON=$(QUIX_VENV)/bin/python $(BIN)/python -m bench

# Memory soak (not part of `make test`): tumbling, dedup and join workers at SOAK_RATE records/s
# each for SOAK_SECONDS (default 600) on their own broker; RSS and state rows over time, exact
# output checks, bench/soak.json.
soak: $(STAMP)
	$(BIN)/python -m bench.soak

local-up: $(STAMP)
	$(BIN)/weir local up

local-down: $(STAMP)
	$(BIN)/weir local down

clean:
	rm -rf $(VENV) .weir .pytest_cache .mypy_cache .ruff_cache
