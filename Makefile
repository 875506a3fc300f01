# Two entry points for a fresh machine: `make quickstart` and `make test`.
# Both create the virtual environment in .venv when it is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reidplug-installed
EXTRAS ?= dev,tensorboard,mlflow,ray,deploy

.PHONY: venv quickstart test test-recipes test-fast browser bench-deps api-docs clean

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
# One pytest worker per core; each test's PyTorch then keeps to one thread, so that two workers
# do not fight over the same two cores.
test: $(STAMP) browser
	OMP_NUM_THREADS=1 REIDPLUG_TEST_ALL=1 $(PY) -m pytest -n auto

# Every FastReID person recipe (13 and the ViT) trains one epoch on a synthetic tree in its
# dataset's layout: about 5 minutes on 2 cores, so CI runs it after the suite.
test-recipes: $(STAMP)
	OMP_NUM_THREADS=1 REIDPLUG_FASTREID_TRAIN=recipes $(PY) -m pytest -n auto tests/test_fastreid_tier.py -k trains_one_epoch

# The report's browser test renders report.html in headless Chromium: Debian's package, installed only
# when no chromium is on PATH. Without apt-get, or when it fails, this says so and goes on; `make test`
# then fails that test rather than skipping it.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the report's browser test"; \
	    { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium >/dev/null; } || echo "make browser: apt-get could not install chromium"; \
	  else \
	    echo "make browser: no chromium on PATH and no apt-get to install it; the report's browser test cannot run"; \
	  fi; }

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# Peers that the benchmarks compare against; never project dependencies.
bench-deps: $(STAMP)
	$(PY) -m pip install --quiet optuna "ray[tune]"

# docs/api.md is generated from the docstrings; tests/test_api_reference.py fails when it is stale.
api-docs: $(STAMP)
	$(PY) -m reidplug.core.apidoc --write docs/api.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
