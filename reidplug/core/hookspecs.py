"""Hook specifications of the `reidplug` project.

Registration hooks receive a `register(name, factory, *, aliases=(), description="")`
callback owned by the host; `factory` is a class or callable, or a lazy
"module:attr" reference that is imported on first use. Names and aliases are
case-insensitive; an alias finds the same component. `description` is the line
`reidplug plugins` shows.

Lifecycle hooks are observed by reporters and other plugins; their return
values are ignored, so an observer can never change a decision. An
implementation takes any subset of a hook's arguments, by name.

A plugin module whose hook name matches no specification here (a typo such as
`register_searcherz`), whose hook takes an argument the specification does not
have, or whose registration hook raises, is disabled with one warning; the
other plugins keep working.
"""

from __future__ import annotations

import pluggy

PROJECT = "reidplug"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_trainers(register):
    """Register trainers: how one optimisation step is done (fp32, amp, ...), chosen by SOLVER.TRAINER."""


@hookspec
def register_searchers(register):
    """Register searchers: `Searcher` subclasses, chosen by TUNE.SEARCHER.

    Example: `register("mysearch", "my_package.search:MySearcher", description="...")`.
    """


@hookspec
def register_schedulers(register):
    """Register trial schedulers: `Scheduler` subclasses, chosen by TUNE.SCHEDULER."""


@hookspec
def register_reporters(register):
    """Register reporters: `Reporter` subclasses observing the lifecycle hooks, listed in TUNE.REPORTERS."""


@hookspec
def register_executors(register):
    """Register executors: `Executor` subclasses (where trial segments run), chosen by TUNE.EXECUTOR."""


@hookspec
def register_datasets(register):
    """Register Re-ID datasets by name, listed in DATASETS.NAMES and DATASETS.TESTS."""


@hookspec
def register_backbones(register):
    """Register backbone builders by name, chosen by MODEL.BACKBONE.NAME."""


@hookspec
def register_trainables(register):
    """Register trainables (what one trial runs) by name, chosen by TUNE.TRAINABLE: a `Trainable`
    subclass or a function `train(config, report)`."""


@hookspec
def register_commands(cli):
    """Add subcommands to the `reidplug` click group: `cli.add_command(my_click_command)`."""


@hookspec
def on_experiment_start(experiment):
    """An experiment starts (or resumes); `experiment` is the `Experiment`."""


@hookspec
def on_trial_start(trial):
    """A trial (`Trial`) is launched: new, resumed after a pause, or restarted after a fault."""


@hookspec
def on_trial_result(trial, result):
    """A trial reported one result (one step): `result` holds the trainable's metrics plus "step",
    "trial_id", "time_total_s" and "timestamp"."""


@hookspec
def on_trial_decision(trial, result, decision, info):
    """The scheduler decided what a trial does next: `decision` is a `Decision` (CONTINUE, PAUSE,
    STOP); `info` a dict of facts about it (e.g. {"reason": "max_steps"} or {"rung": 2})."""


@hookspec
def on_trial_complete(trial):
    """A trial ended without error (finished its budget or was stopped); `trial.last_result` is its last result."""


@hookspec
def on_trial_error(trial, error):
    """A trial failed; `error` is the message (the traceback is in its folder)."""


@hookspec
def on_experiment_end(experiment):
    """The experiment ended; its results are final (`experiment.summary()`)."""
