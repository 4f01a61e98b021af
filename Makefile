# The README's two commands: `make demo` and `make test`. Both build what they need in .venv.
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
CONSTRAINTS ?= constraints/airflow-$(AIRFLOW_VERSION).txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)

.PHONY: install demo test lint typecheck pytest sandbox clean

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

sandbox: install
	$(BIN)/python -m airflow_provider_itnio.sandbox

clean:
	rm -rf $(VENV) .airflow_home .mypy_cache .ruff_cache .pytest_cache
