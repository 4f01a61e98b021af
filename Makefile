# The README's two commands: `make demo` and `make test`. Both build what they need in .venv.
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
CONSTRAINTS ?= constraints/airflow-$(AIRFLOW_VERSION).txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)

.PHONY: install demo test lint typecheck pytest sandbox clean install-compat test-compat airflow bench

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

# Every benchmark (about 6-10 minutes on 2 cores); rewrites bench/RESULTS.md.
bench: install
	$(BIN)/python -m bench.run_all

sandbox: install
	$(BIN)/python -m airflow_provider_itnio.sandbox

# A local Airflow (UI on :8080) with dags_examples/ and itnio_default pointing at a running sandbox; Ctrl-C stops all.
airflow: install
	$(BIN)/python scripts/airflow_local.py

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .airflow_home .mypy_cache .ruff_cache .pytest_cache
