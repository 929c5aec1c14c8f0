# Each target sets itself up: it creates (or reuses) a virtual environment in
# .venv and installs the package with what the target needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: demo train test lint format clean

RECIPE ?= digits_resnet20

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m training.demo

# `make train RECIPE=cifar10_resnet20 ARGS="--strategy mirrored"`
train: $(STAMP)
	$(PY) -m training.train --recipe $(RECIPE) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check keras_resnets training tests benchmarks
	$(VENV)/bin/ruff format --check keras_resnets training tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format keras_resnets training tests benchmarks
	$(VENV)/bin/ruff check --fix keras_resnets training tests benchmarks

test: $(STAMP) lint
	$(PY) -m pytest -q --durations=15

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
