"""Hook specifications of the `reidplug` project.

Registration hooks receive a `register(name, factory, *, aliases=(), description="")`
callback owned by the host; `factory` is a class or callable, or a lazy
"module:attr" reference that is imported on first use. Lifecycle hooks are
observed by reporters and other plugins; their return values are ignored.
"""

from __future__ import annotations

import pluggy

PROJECT = "reidplug"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_trainers(register):
    """Register trainers: how one optimisation step is done (fp32, amp, ...)."""


@hookspec
def register_searchers(register):
    """Register searchers: which configuration to try next."""


@hookspec
def register_schedulers(register):
    """Register trial schedulers: which trials run, pause, stop or exploit."""


@hookspec
def register_reporters(register):
    """Register reporters: objects that observe the lifecycle hooks."""


@hookspec
def register_executors(register):
    """Register executors: where trial segments run."""


@hookspec
def register_datasets(register):
    """Register Re-ID datasets by name."""


@hookspec
def register_backbones(register):
    """Register backbone builders by name."""


@hookspec
def register_trainables(register):
    """Register trainables (what one trial runs) by name."""


@hookspec
def register_commands(cli):
    """Add subcommands to the `reidplug` click group."""


@hookspec
def on_experiment_start(experiment):
    """An experiment starts (or resumes)."""


@hookspec
def on_trial_start(trial):
    """A trial is launched: new, resumed after a pause, or restarted after a fault."""


@hookspec
def on_trial_result(trial, result):
    """A trial reported one result (one budget unit)."""


@hookspec
def on_trial_decision(trial, result, decision, info):
    """The scheduler decided what a trial does next (continue, pause, stop)."""


@hookspec
def on_trial_complete(trial):
    """A trial ended without error (finished its budget or was stopped)."""


@hookspec
def on_trial_error(trial, error):
    """A trial failed; `error` is the message (the traceback is in its folder)."""


@hookspec
def on_experiment_end(experiment):
    """The experiment ended; its results are final."""
