"""The Reporter base class: observes the lifecycle hooks, never changes a decision."""

from __future__ import annotations

from typing import Any


class Reporter:
    """Built once per experiment and registered as a plugin for its duration.

    Implement any of the lifecycle hooks as methods marked with `@hookimpl`:
    on_experiment_start, on_trial_start, on_trial_result, on_trial_decision,
    on_trial_complete, on_trial_error, on_experiment_end. Options come from
    the config section named after the reporter (TUNE.CONSOLE, ...).
    """

    OPTIONS: dict[str, Any] = {}

    def __init__(self, experiment):
        self.experiment = experiment
