# AI Mass: `make demo` and `make test` work from a fresh clone.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
VAR ?= var
export PATH := $(CURDIR)/$(BIN):$(PATH)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

VENV_STAMP := $(VENV)/.aimass-installed
SAMPLE_STAMP := $(VAR)/data/raw/.sample-ready

.PHONY: help setup system-packages demo up stop status test test-cluster test-unit test-e2e lint bench lock clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(VENV_STAMP) $(SAMPLE_STAMP) ## venv from the lock, aimass editable, sample data

$(VENV_STAMP): requirements.lock pyproject.toml
	@tools/check_java.sh
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "AI Mass needs Python 3.11, got " + sys.version.split()[0]' \
	  || { echo "error: set PYTHON=/path/to/python3.11 (e.g. make setup PYTHON=~/.pyenv/versions/3.11.7/bin/python)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $@

$(SAMPLE_STAMP): $(VENV_STAMP) src/aimass/data/sample_data.py
	$(BIN)/python -m aimass.cli fetch-sample --var-dir $(VAR)
	@touch $@

# PROFILE=cluster: PostgreSQL, Redis + Celery workers, MLflow on S3, a Spark standalone cluster
# (README "The production profile"); empty: the profile this var dir last ran, else embedded.
PROFILE ?=
PROFILE_ARG := $(if $(PROFILE),--profile $(PROFILE),)

demo: setup ## start Airflow, MLflow and the model server, run the retraining DAG, print a summary
	$(BIN)/python -m aimass.cli demo $(PROFILE_ARG)

up: setup system-packages ## start the services and run nothing (PROFILE=cluster: the production profile)
	$(BIN)/python -m aimass.cli up $(PROFILE_ARG)

stop: ## stop the services that `make demo` started
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m aimass.cli stop; else echo "nothing to stop (no venv)"; fi

status: ## show which demo services are running
	$(BIN)/python -m aimass.cli status

system-packages: ## chromium (and a font) for the browser tests: installs them as root on Debian/Ubuntu, else says how
	@tools/system_packages.sh

# `make test` runs on TEST_WORKERS processes, a test file per process at a time, in the
# order of pyproject's testpaths: the end-to-end module (a whole Airflow, mostly waiting on
# its runs) starts first, and the rest of the suite runs beside it.
TEST_WORKERS ?= 2

test: setup system-packages ## unit, dags, integration and e2e tests (TEST_WORKERS=2 processes); CI then runs test-cluster
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 -m "not cluster"

# The production profile's end-to-end test (about 15 minutes on 2 cores): its own step in
# .ci/run, so that `make test` stays well under 40 minutes from a fresh clone.
test-cluster: setup system-packages ## the production profile (PROFILE=cluster) end to end: retrain, landing, faults, rollback
	$(BIN)/python -m pytest -m cluster --durations=10

test-unit: setup ## unit and DAG integrity tests only (fast)
	$(BIN)/python -m pytest -m "unit or dags"

test-e2e: setup ## end-to-end tests only
	$(BIN)/python -m pytest -m e2e

bench: setup ## every benchmark in bench/ (each writes bench/results/<name>.json)
	@for f in bench/bench_*.py; do [ -e "$$f" ] || continue; echo "== $$f"; $(BIN)/python "$$f"; done

bench-%: setup ## one benchmark: make bench-<name> runs bench/bench_<name>.py
	$(BIN)/python bench/bench_$*.py

bench-docs: $(VENV_STAMP) ## the benchmark tables in docs/benchmarks.md, from bench/results/*.json
	$(BIN)/python tools/bench_tables.py

lint: setup ## ruff (with the Airflow rules) and mypy
	$(BIN)/ruff check dags plugins jobs models src tests bench
	$(BIN)/ruff format --check dags plugins jobs models src tests bench
	$(BIN)/mypy src/aimass jobs models dags plugins

lock: ## re-resolve requirements.lock from requirements*.txt
	uv pip compile --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  requirements.txt requirements-dev.txt -o requirements.lock

clean: stop ## remove runtime state (lake, models, MLflow store, Airflow home), keep venv and sample data
	rm -rf $(VAR)/lake $(VAR)/serving $(VAR)/mlflow $(VAR)/airflow $(VAR)/reports $(VAR)/runs $(VAR)/logs

distclean: stop ## remove everything not in git
	rm -rf $(VENV) $(VAR)
