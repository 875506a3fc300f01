# Two entry points for a fresh machine: `make quickstart` and `make test`.
# Both create the virtual environment in .venv when it is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reidplug-installed
EXTRAS ?= dev,tensorboard,mlflow,ray

.PHONY: venv quickstart test test-fast bench-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml plugins_contrib/reidplug-skopt/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.2" "setuptools>=68" wheel
	# torch and torchvision first: pip takes the newest release the pyproject range allows
	$(PY) -m pip install --quiet "torch>=2.1,<=2.14.1" "torchvision>=0.16,<=0.29.1"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	# the third-party searcher shipped as an example plugin; the tests exercise it
	$(PY) -m pip install --quiet -e ./plugins_contrib/reidplug-skopt
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/reidplug run configs/quickstart.yml --fresh

# Every optional dependency is installed above, so none may be skipped for being missing.
test: $(STAMP)
	REIDPLUG_TEST_ALL=1 $(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# Peers that the benchmarks compare against; never project dependencies.
bench-deps: $(STAMP)
	$(PY) -m pip install --quiet optuna "ray[tune]"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
