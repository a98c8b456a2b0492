# `make demo` and `make test` do all the set-up on a fresh machine: they create .venv and install
# the project into it first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ANNAPURNA_HOME ?= $(CURDIR)/.annapurna
export DAGSTER_HOME ?= $(ANNAPURNA_HOME)/dagster

.PHONY: install demo test ui lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install
	ANNAPURNA_SOURCES=demo $(BIN)/annapurna demo

test: install
	$(BIN)/pytest -q

ui: install
	mkdir -p "$(DAGSTER_HOME)"
	[ -f "$(DAGSTER_HOME)/dagster.yaml" ] || cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"
	$(BIN)/dagster dev -w workspace.yaml

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/bench_demo.py

clean:
	rm -rf "$(ANNAPURNA_HOME)"
