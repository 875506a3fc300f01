"""The Reporter base class: observes the lifecycle hooks, never changes a decision."""

from __future__ import annotations

from typing import Any


class Reporter:
    """Built once per experiment and registered as a plugin for its duration.

    Implement any of the lifecycle hooks as methods marked with `@hookimpl`:
    on_experiment_start, on_trial_start, on_trial_result, on_trial_decision,
    on_trial_complete, on_trial_error, on_experiment_end. The experiment
    registers its reporters and calls on_experiment_start at its first `ask()`.

    Options: list them with their defaults in `OPTIONS` (upper case); users set
    them in the section named after the reporter (`TUNE.CONSOLE: {QUIET: true}`)
    and the reporter is built as `Cls(experiment, **options)`, with lower-case
    keywords typed by its `__init__` annotations. The base class keeps them in
    `self.options`; `self.section` is the section's name ("TUNE.CONSOLE"), for the
    keys of its own ConfigErrors. A reporter never changes the search, so its
    options may change when an experiment is resumed.
    """

    OPTIONS: dict[str, Any] = {}

    def __init__(self, experiment, **options):
        self.experiment = experiment
        self.options = options
        if not hasattr(self, "section"):  # built by hand rather than from the config: ConsoleReporter -> TUNE.CONSOLE
            name = type(self).__name__
            self.section = "TUNE." + (name[: -len("Reporter")] if name.endswith("Reporter") else name).upper()
