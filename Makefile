# Two commands do all the set-up on a fresh machine:
#   make run    install dermbench and its plugins, then run the main job on the embedded synthetic sample
#   make test   install dermbench, every first-party plugin and the test tools, then run all tests
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: run test install install-test lint format clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(PLUGINS) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[weights]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	bash scripts/install-test-system.sh
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/dermbench run --task ham7 --method lmf

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install-test lint
	$(BIN)/python -m pytest -q

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
