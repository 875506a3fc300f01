"""Optional dependencies in tests: skipped where missing, except under `make test`.

`make test` sets REIDPLUG_TEST_ALL=1 because its environment installs every
extra and the contrib plugin; there a missing module is an install bug and must
fail rather than silently skip the tests that need it.
"""

import importlib
import os

import pytest


def need(module: str):
    if os.environ.get("REIDPLUG_TEST_ALL"):
        return importlib.import_module(module)
    return pytest.importorskip(module)
