# Each target sets itself up: it creates (or reuses) a virtual environment in
# .venv and installs the package with every extra (".[all]"), at the exact
# versions of constraints.txt. `make upgrade` refreshes those versions.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := constraints.txt
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
# for PyTorch's CPU-only wheel instead of PyPI's default build.
PIP_ARGS ?=
UPGRADE_VENV := build/upgrade-venv
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: demo train test lint format clean upgrade

RECIPE ?= digits_resnet20

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_ARGS) -c $(CONSTRAINTS) -e ".[all]"
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
	KERAS_BACKEND=jax $(PY) -m pytest -q -m multibackend -p no:cacheprovider
	KERAS_BACKEND=torch $(PY) -m pytest -q -m multibackend -p no:cacheprovider

# Rewrite constraints.txt with the newest releases setup.cfg allows: install
# ".[all]" without constraints into a fresh venv and freeze it (minus the package,
# pip/setuptools/wheel and local version labels such as +cpu). Then run `make test`
# and commit constraints.txt if it passes.
upgrade:
	rm -rf $(UPGRADE_VENV)
	$(PYTHON) -m venv $(UPGRADE_VENV)
	$(UPGRADE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(UPGRADE_VENV)/bin/python -m pip install --quiet $(PIP_ARGS) ".[all]"
	sed -n '/^#/p' $(CONSTRAINTS) > $(CONSTRAINTS).new
	$(UPGRADE_VENV)/bin/python -m pip list --format=freeze \
		| grep -viE '^(keras[-_]resnets|pip|setuptools|wheel)==' \
		| sed -E 's/^([^=]+==[^+]+)[+].*/\1/' >> $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(UPGRADE_VENV)
	git diff --stat -- $(CONSTRAINTS) || true

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
