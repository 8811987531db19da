# retailstream: `make demo` and `make test` are the two commands a newcomer needs;
# both run `make setup` first, which does nothing when everything is in place.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JARS   := .cache/jars/manifest.json
# The browser tests drive Debian's Chromium through its ChromeDriver.
CHROMEDRIVER := /usr/bin/chromedriver
# bench/bench_api.py loads the API with Debian's wrk (a C client: a Python one would
# take the cores the server needs).
WRK := /usr/bin/wrk
# `retailstream postgres start` runs Debian's PostgreSQL server programs: any major version's
# initdb, else a path that never exists, so that setup installs the package.
POSTGRES_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) /usr/lib/postgresql/initdb)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit lint bench kafka-start kafka-stop postgres-start postgres-stop clean

setup: $(STAMP) $(JARS) $(CHROMEDRIVER) $(WRK) $(POSTGRES_INITDB)

# The virtualenv with the package (editable) and its dev tools.
$(STAMP): setup.py pyproject.toml src/retailstream/VERSION
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

# The pinned JVM artifacts (Kafka broker, Spark Kafka connector, Delta), resolved once.
$(JARS): $(STAMP) src/retailstream/jars.py
	$(BIN)/retailstream jars resolve
	@touch $@

$(CHROMEDRIVER):
	$(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver \
	  || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver; }

$(WRK):
	$(SUDO) apt-get install -y --no-install-recommends wrk \
	  || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends wrk; }

# Debian's postgresql may also start a cluster of its own on 5432; ours is on 5433.
$(POSTGRES_INITDB):
	$(SUDO) apt-get install -y --no-install-recommends postgresql \
	  || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends postgresql; }

demo: setup
	$(BIN)/retailstream demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

# Every benchmark against its baseline (about an hour on 2 cores); one: `make bench BENCH=peer`,
# a smoke run: `make bench BENCH_ARGS=--quick`.
BENCH ?=
BENCH_ARGS ?=
bench: setup
	$(BIN)/retailstream bench $(BENCH) $(BENCH_ARGS)

# Style, formatting and the types of the package, its tests and benchmarks; CI runs it
# before the tests.
lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

kafka-start: setup
	$(BIN)/retailstream kafka start --create-topics

kafka-stop: setup
	$(BIN)/retailstream kafka stop

postgres-start: setup
	$(BIN)/retailstream postgres start

postgres-stop: setup
	$(BIN)/retailstream postgres stop

clean:
	rm -rf $(VENV) .cache
