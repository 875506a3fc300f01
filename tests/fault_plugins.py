"""A third-party plugin distribution for the tests of faults and options: installed for real
(entry point group `reidplug`), once per test session."""

from __future__ import annotations

import pytest
from conftest import install_distribution

PLUGIN = '''
import os

from reidplug.core.errors import ConfigError
from reidplug.core.hookspecs import hookimpl
from reidplug.core.reporter import Reporter
from reidplug.core.scheduler import Scheduler
from reidplug.core.searcher import Searcher
from reidplug.core.trial import Decision


class Faulty(Searcher):
    """The middle of the space, but raises when asked for trial RP_FAULT_AT (environment)."""

    OPTIONS = {"SHIFT": 0.0, "VERBOSE": False}
    RESUMABLE_OPTIONS = ("VERBOSE",)  # VERBOSE does not change the search; SHIFT does

    def __init__(self, space, *, shift: float = 0.0, verbose: bool = False, **kwargs):
        super().__init__(space, **kwargs)
        self.shift = shift

    def _suggest(self, trial_id):
        if trial_id == int(os.environ.get("RP_FAULT_AT", "0")):
            raise RuntimeError(f"no point for trial {trial_id}")
        return {name: d.from_unit(min(0.5 + self.shift + trial_id / 100, 1.0)) for name, d in self.space.items()}


class NeedsLib(Searcher):
    def __init__(self, space, **kwargs):
        import rp_library_not_installed  # noqa: F401  (heavy imports belong in the constructor)


class Median(Scheduler):
    """Continues every trial; raises in on_result at step RP_FAULT_STEP (environment)."""

    OPTIONS = {"GRACE_PERIOD": 1}
    NEEDS_MAX_STEPS = False

    def __init__(self, searcher, *, grace_period: int = 1, **kwargs):
        super().__init__(searcher, **kwargs)
        if grace_period < 1:
            raise ConfigError(f"must be at least 1, got {grace_period}", key=f"{self.section}.GRACE_PERIOD")

    def on_result(self, trial, result):
        if result["step"] == int(os.environ.get("RP_FAULT_STEP", "0")):
            return {"history": []}["median"]  # a bug: KeyError
        return Decision.CONTINUE


class Notes(Reporter):
    """Writes one line per completed trial to notes.txt: its PREFIX and the trial id."""

    OPTIONS = {"PREFIX": "run"}

    @hookimpl
    def on_trial_complete(self, trial):
        if os.environ.get("RP_NOTES_FAIL"):
            raise OSError("the notes disk is full")
        with open(self.experiment.dir / "notes.txt", "a") as f:
            f.write(f"{self.options['prefix']} {trial.id} {self.section}\\n")


@hookimpl
def register_searchers(register):
    register("faulty", Faulty, description="raises on purpose")
    register("needs_lib", NeedsLib, description="needs a library that is not installed")


@hookimpl
def register_schedulers(register):
    register("median", Median, aliases=("median_stopping",), description="continues; raises on purpose")


@hookimpl
def register_reporters(register):
    register("notes", Notes, description="notes.txt")
'''


_installed: list = []  # each test module that imports the fixture gets its own copy of it: install once


@pytest.fixture(scope="session")
def fault_site(tmp_path_factory):
    """The folder (for PYTHONPATH / sys.path) holding the installed distribution rp-faults 1.2.3."""
    if not _installed:
        site = tmp_path_factory.mktemp("fault-site")
        _installed.append(install_distribution(site, "rp-faults", {"rp_faults": PLUGIN}, {"faults": "rp_faults"}))
    return _installed[0]


@pytest.fixture
def with_fault_plugin(fault_site, monkeypatch):
    """This process sees rp-faults as an installed distribution (a fresh plugin manager)."""
    from reidplug.core import manager

    monkeypatch.syspath_prepend(str(fault_site))
    manager.reset_plugin_manager()
    return fault_site
