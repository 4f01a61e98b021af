# The README's two commands: `make demo` and `make test`. Both build what they need in .venv.
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
CONSTRAINTS ?= constraints/airflow-$(AIRFLOW_VERSION).txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)

.PHONY: install demo test lint typecheck pytest sandbox clean install-compat test-compat airflow bench test-browser \
	dist test-dist

install: $(STAMP)

$(STAMP): pyproject.toml $(wildcard $(CONSTRAINTS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.4"
	$(BIN)/uv pip install --quiet --python $(BIN)/python \
		$(if $(wildcard $(CONSTRAINTS)),--constraint $(CONSTRAINTS)) \
		"apache-airflow==$(AIRFLOW_VERSION)" -e ".[dev]"
	touch $@

demo: install
	$(BIN)/python scripts/demo.py

test: install lint typecheck pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q

# The same suite on Airflow 2.11 in its own venv (ruff and mypy run once, on 3.3, in `make test`).
COMPAT_VENV ?= .venv-af2
COMPAT_AIRFLOW ?= 2.11.*
COMPAT_CONSTRAINTS ?= constraints/airflow-2.11.x.txt
COMPAT_BIN := $(COMPAT_VENV)/bin
COMPAT_STAMP := $(COMPAT_VENV)/.installed-2.11

install-compat: $(COMPAT_STAMP)

$(COMPAT_STAMP): pyproject.toml $(wildcard $(COMPAT_CONSTRAINTS))
	test -x $(COMPAT_BIN)/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.4"
	$(COMPAT_BIN)/uv pip install --quiet --python $(COMPAT_BIN)/python \
		$(if $(wildcard $(COMPAT_CONSTRAINTS)),--constraint $(COMPAT_CONSTRAINTS)) \
		"apache-airflow==$(COMPAT_AIRFLOW)" -e ".[dev]"
	touch $@

test-compat: install-compat
	$(COMPAT_BIN)/pytest -q

# The browser suite (tests/e2e/browser): the real Airflow 3.3 UI in headless Chromium, through Playwright for Python.
# Installs the system's Chromium with apt-get if it is missing; screenshots go to $(BROWSER_ARTIFACTS)/.
BROWSER_ARTIFACTS ?= artifacts/browser
test-browser: install
	bash scripts/ensure_chromium.sh
	ITNIO_BROWSER_TESTS=1 ITNIO_BROWSER_ARTIFACTS=$(BROWSER_ARTIFACTS) $(BIN)/pytest -q tests/e2e/browser

# Every benchmark (about 6-10 minutes on 2 cores); rewrites bench/RESULTS.md. First adds to .venv the peers it
# measures (http, slack and telegram providers), pinned in BENCH_CONSTRAINTS; CONSTRAINTS keeps every package that
# `make test` uses at its version.
BENCH_CONSTRAINTS ?= constraints/bench-airflow-$(AIRFLOW_VERSION).txt
BENCH_PEERS := apache-airflow-providers-http apache-airflow-providers-slack apache-airflow-providers-telegram
BENCH_STAMP := $(VENV)/.installed-bench-$(AIRFLOW_VERSION)

$(BENCH_STAMP): $(STAMP) $(BENCH_CONSTRAINTS)
	$(BIN)/uv pip install --quiet --python $(BIN)/python \
		$(if $(wildcard $(CONSTRAINTS)),--constraint $(CONSTRAINTS)) --constraint $(BENCH_CONSTRAINTS) $(BENCH_PEERS)
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run_all

# The two-way benchmarks, not in `make bench` (heavy: each starts a whole Airflow): receiver throughput next to
# Airflow's REST and airflow-provider-inbound-webhooks (bench/bench_receiver.py), and many deferred sensors on one
# triggerer (bench/bench_deferred_sensors.py). Adds the peer to .venv (pinned in BENCH_CONSTRAINTS; it adds no
# other package) and writes sections 7 and 8 of bench/RESULTS.md. Scale with BENCH_PUSHES / BENCH_SENSORS.
.PHONY: bench-two-way
BENCH_TWO_WAY_PEERS := airflow-provider-inbound-webhooks
BENCH_TWO_WAY_STAMP := $(VENV)/.installed-bench-two-way-$(AIRFLOW_VERSION)
BENCH_PUSHES ?= 20000
BENCH_SENSORS ?= 1000

$(BENCH_TWO_WAY_STAMP): $(STAMP) $(BENCH_CONSTRAINTS)
	$(BIN)/uv pip install --quiet --python $(BIN)/python \
		$(if $(wildcard $(CONSTRAINTS)),--constraint $(CONSTRAINTS)) --constraint $(BENCH_CONSTRAINTS) $(BENCH_TWO_WAY_PEERS)
	touch $@

bench-two-way: $(BENCH_TWO_WAY_STAMP)
	$(BIN)/python -m bench.bench_receiver --pushes $(BENCH_PUSHES) --results
	$(BIN)/python -m bench.bench_deferred_sensors --sensors $(BENCH_SENSORS) --results

sandbox: install
	$(BIN)/python -m airflow_provider_itnio.sandbox --port 8765

# A local Airflow (UI on 127.0.0.1:8080, loopback only) with dags_examples/ and itnio_default pointing at a running
# sandbox (port 8765); Ctrl-C stops all. `make airflow-env` prints the line that points the Airflow CLI of another
# shell at it: eval "$$(make -s airflow-env)".
.PHONY: airflow-env
airflow: install
	$(BIN)/python scripts/airflow_local.py

airflow-env: install
	@$(BIN)/python scripts/airflow_local.py --print-env

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .airflow_home .mypy_cache .ruff_cache .pytest_cache

# The production-like stack (scripts/stack.py; README "Production-like stack"): PostgreSQL and Redis from Debian's
# packages (apt-get, scripts/install_stack_deps.sh), Airflow 3.3 with CeleryExecutor (api-server, scheduler,
# dag-processor, triggerer, two Celery workers) and the sandbox, on loopback; data, logs and state in .stack/.
# Its own venv (the Celery provider and the PostgreSQL drivers, pinned in CONSTRAINTS), so `make test` is unaffected.
# `make test-stack` runs tests/e2e/stack against it (starting it first and stopping it after, unless it was running),
# with a 3-minute soak (STACK_SOAK_SECONDS); `make test-soak` runs only the soak, at the issue's 10 minutes.
.PHONY: install-stack stack stack-down test-stack test-soak
STACK_VENV ?= .venv-stack
STACK_BIN := $(STACK_VENV)/bin
STACK_STAMP := $(STACK_VENV)/.installed-$(AIRFLOW_VERSION)
STACK_PACKAGES := apache-airflow-providers-celery asyncpg psycopg2-binary

install-stack: $(STACK_STAMP)
	bash scripts/install_stack_deps.sh

$(STACK_STAMP): pyproject.toml $(wildcard $(CONSTRAINTS))
	test -x $(STACK_BIN)/python || $(PYTHON) -m venv $(STACK_VENV)
	$(STACK_BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.4"
	$(STACK_BIN)/uv pip install --quiet --python $(STACK_BIN)/python \
		$(if $(wildcard $(CONSTRAINTS)),--constraint $(CONSTRAINTS)) \
		"apache-airflow==$(AIRFLOW_VERSION)" -e ".[dev]" $(STACK_PACKAGES)
	touch $@

stack: install-stack
	$(STACK_BIN)/python scripts/stack.py up

stack-down:
	$(if $(wildcard $(STACK_BIN)/python),$(STACK_BIN)/python,$(PYTHON)) scripts/stack.py down

STACK_SOAK_SECONDS ?= 180
SOAK_SECONDS ?= 600

# $(call on-stack,COMMAND): start the stack unless it runs, run COMMAND (no commas) with ITNIO_STACK_TESTS=1, stop
# the stack if this started it; exit with COMMAND's status.
on-stack = @if $(STACK_BIN)/python scripts/stack.py status >/dev/null; then started=0; else started=1; fi; \
	$(STACK_BIN)/python scripts/stack.py up || { [ $$started = 0 ] || $(STACK_BIN)/python scripts/stack.py down; exit 1; }; \
	ITNIO_STACK_TESTS=1 $(1); rc=$$?; \
	if [ $$started = 1 ]; then $(STACK_BIN)/python scripts/stack.py down; fi; exit $$rc

test-stack: install-stack
	$(call on-stack,ITNIO_SOAK_SECONDS=$(STACK_SOAK_SECONDS) $(STACK_BIN)/pytest -q tests/e2e/stack)

test-soak: install-stack
	$(call on-stack,ITNIO_SOAK_SECONDS=$(SOAK_SECONDS) $(STACK_BIN)/pytest -q tests/e2e/stack/test_faults.py::test_soak_with_faults)

# The ledger of a 1,000,000-row batch on the stack's PostgreSQL (bench/bench_ledger_pg.py, a scratch database of the
# stack's cluster, never `airflow`): size on disk, writes, bytes written, after the sweep and VACUUM. Not in `make
# bench` (it needs the stack); writes its section of bench/RESULTS.md. Scale with LEDGER_ROWS.
.PHONY: bench-ledger-pg
LEDGER_ROWS ?= 1000000
bench-ledger-pg: install-stack
	$(call on-stack,$(STACK_BIN)/python -m bench.bench_ledger_pg --rows $(LEDGER_ROWS) --results)

# The documentation (docs/: Sphinx + MyST pages, the API reference from the docstrings, samples included from
# dags_examples/ by their START/END markers): HTML in docs/_build/html. Every warning is an error (-W, all reported:
# --keep-going) and references are nitpicky (-n): a broken cross-reference or internal link, a page missing from the
# table of contents, an include whose file or markers are gone fail the build. Nothing is fetched from the network.
# Adds the `docs` extra to .venv, within CONSTRAINTS (so no version `make test` uses changes).
.PHONY: docs
DOCS_STAMP := $(VENV)/.installed-docs-$(AIRFLOW_VERSION)

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/uv pip install --quiet --python $(BIN)/python \
		$(if $(wildcard $(CONSTRAINTS)),--constraint $(CONSTRAINTS)) -e ".[dev,docs]"
	touch $@

docs: $(DOCS_STAMP)
	rm -rf docs/_build/html
	$(BIN)/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html

# The sdist and the wheel, as a release ships them (docs/install.md): `uv build` (hatchling) into dist/, then
# scripts/check_dist.py checks them against the source tree (every package file in both, valid metadata, entry
# points). `make test-dist` installs that wheel with Airflow $(AIRFLOW_VERSION) in a fresh venv (no editable install)
# and runs the sandbox, the demo DAG and the connection test from there (tests/e2e/packaging).
dist: install
	rm -rf dist
	$(BIN)/uv build --out-dir dist
	$(BIN)/python scripts/check_dist.py dist

test-dist: dist
	ITNIO_DIST_TESTS=1 ITNIO_DIST_AIRFLOW_VERSION=$(AIRFLOW_VERSION) ITNIO_DIST_CONSTRAINTS=$(CONSTRAINTS) \
		$(BIN)/pytest -q tests/e2e/packaging
