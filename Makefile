PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint test-compat test-ui test-distributed demo airflow bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Quality gates first (zero findings), then the whole suite.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# The same suite on Airflow 2.11, in a second venv; any other Airflow in a venv of its own, e.g.
# `make test-compat COMPAT_AIRFLOW=3.0.* COMPAT_VENV=.venv-af30`. Pins that an Airflow X.Y needs but does not
# declare are in ci/constraints-airflow-X.Y.txt, used when it exists. Tests of Airflow 3-only machinery (a
# full `airflow standalone`, the wheel install check, the benchmarks' smoke runs) run once, in `make test`.
COMPAT_VENV ?= .venv-compat
COMPAT_AIRFLOW ?= 2.11.*
COMPAT_CONSTRAINTS := $(wildcard ci/constraints-airflow-$(basename $(COMPAT_AIRFLOW)).txt)
COMPAT_STAMP := $(COMPAT_VENV)/.installed

$(COMPAT_STAMP): setup.cfg pyproject.toml $(COMPAT_CONSTRAINTS)
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/pip install --quiet -e '.[test]' 'apache-airflow==$(COMPAT_AIRFLOW)' \
		$(addprefix -c ,$(COMPAT_CONSTRAINTS))
	touch $(COMPAT_STAMP)

test-compat: $(COMPAT_STAMP)
	$(COMPAT_VENV)/bin/python -m pytest -q --ignore=tests/integration/test_full_stack.py \
		--ignore=tests/test_packaging.py --ignore=tests/bench

# The provider on a distributed Airflow 3: CeleryExecutor on PostgreSQL and Redis (Debian packages, installed
# when missing), two Celery workers, two triggerers, processes SIGKILLed mid-run (tests/distributed/). Its own
# venv; `timeout` sends SIGINT, so a hung run still stops every process it started.
DIST_VENV ?= .venv-distributed
DIST_AIRFLOW ?= 3.3.*
DIST_STAMP := $(DIST_VENV)/.installed

$(DIST_STAMP): setup.cfg pyproject.toml ci/constraints-distributed.txt
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/pip install --quiet --upgrade pip
	$(DIST_VENV)/bin/pip install --quiet -e '.[test]' 'apache-airflow==$(DIST_AIRFLOW)' \
		apache-airflow-providers-celery psycopg2-binary asyncpg -c ci/constraints-distributed.txt
	touch $(DIST_STAMP)

test-distributed: $(DIST_STAMP)
	timeout -s INT -k 60 1200 $(DIST_VENV)/bin/python -m pytest -q -s -p no:cacheprovider \
		tests/distributed/celery_ha_scenario.py

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# A local Airflow (standalone, SQLite) with the example DAGs and `aep_default` pointed at the AEP emulator;
# prints the URL and the login; Ctrl-C stops everything. `make airflow AIRFLOW_PORT=8080` picks the port.
airflow: $(STAMP)
	$(BIN)/python scripts/local_airflow.py $(if $(AIRFLOW_PORT),--port $(AIRFLOW_PORT))

# The browser test (tests/ui) against `make airflow`: Debian's Chromium (apt-get installs it when missing),
# driven by Playwright from the `ui` extra; no browser is downloaded. Screenshots of a failed run: build/test-ui/.
CHROMIUM ?= /usr/bin/chromium
UI_STAMP := $(VENV)/.installed-ui

# CI runs suites side by side: one apt-get at a time (tests/distributed/services.py takes the same lock).
APT_LOCK := /tmp/airflow-provider-aep-apt.lock

$(CHROMIUM):
	flock $(APT_LOCK) sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends chromium'

$(UI_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,ui]'
	touch $(UI_STAMP)

test-ui: $(UI_STAMP) $(CHROMIUM)
	AEP_UI_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -m ui tests/ui

# Benchmarks run in their own venv so aepp (the SDK we compare against) never enters the test venv.
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e '.[test]' aepp apache-airflow-providers-http
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m bench.run_all --json bench/results.json

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
