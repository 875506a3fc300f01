"""The Executor base class: runs trial segments somewhere and streams events back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LaunchSpec:
    """Everything a worker needs to run a trial: picklable, no live objects."""

    trial_id: int
    trainable: str  # registered trainable name or "module:attr"
    params: dict
    context: Any  # reidplug.core.trainable.TrialContext
    plugins_blocked: list[str] = field(default_factory=list)


@dataclass
class ResultEvent:
    trial_id: int
    metrics: dict
    checkpoint: str | None = None  # folder saved after this step, if one was asked for
    time_s: float = 0.0  # wall time of the step in the worker
    step: int | None = None  # steps the trial has completed, counted from its start checkpoint


@dataclass
class SavedEvent:
    trial_id: int
    checkpoint: str


@dataclass
class ErrorEvent:
    trial_id: int
    message: str
    traceback: str = ""
    fault: bool = False  # True: the worker died (killed, out of memory), so a retry may help


class Executor:
    """Runs trials in slots; the loop never blocks on one trial.

    How the experiment loop drives an executor::

        executor.start()
        while ...:
            if executor.free_slots():
                executor.launch(spec, save_to=...)   # setup (+ load), then one step
            for event in executor.poll(timeout):     # ResultEvent | SavedEvent | ErrorEvent
                ...
                executor.step(trial_id, save_to)     # one more step (then save, if asked)
                executor.save(trial_id, path)        # save now (before a pause)
                executor.release(trial_id)           # end the trainable, free the slot
        executor.shutdown()

    `save_to`, when given, is an empty folder path the worker saves into after the
    step, before reporting, so a result and its checkpoint arrive together.
    """

    #: Option name (upper case) -> default; set in the config section TUNE.<NAME>.
    OPTIONS: dict[str, Any] = {}

    def __init__(self, experiment=None, *, max_concurrent: int = 1, resources: dict | None = None,
                 experiment_dir: str = "."):
        self.experiment = experiment
        self.max_concurrent = max_concurrent
        self.resources = dict(resources or {"cpu": 1.0, "gpu": 0.0})
        self.experiment_dir = experiment_dir

    def start(self) -> None:
        """Start workers or connect to a cluster; called once before the first launch."""

    def free_slots(self) -> int:
        """How many more trials can be launched now."""
        raise NotImplementedError

    def launch(self, spec: LaunchSpec, save_to: str | None = None) -> None:
        """Start trial `spec.trial_id`: set the trainable up (loading `spec.context.restore_from`), run one step."""
        raise NotImplementedError

    def step(self, trial_id: int, save_to: str | None = None) -> None:
        """Run one more step of a launched trial; its ResultEvent comes through `poll`."""
        raise NotImplementedError

    def save(self, trial_id: int, path: str) -> None:
        """Save the trial into the empty folder `path` now; a SavedEvent comes through `poll`."""
        raise NotImplementedError

    def release(self, trial_id: int) -> None:
        """End the trial's trainable (its `cleanup`) and free its slot."""
        raise NotImplementedError

    def poll(self, timeout: float | None = None) -> list:
        """Events that arrived (ResultEvent, SavedEvent, ErrorEvent), waiting up to `timeout` seconds for one."""
        raise NotImplementedError

    def running(self) -> list[int]:
        """Ids of the trials that hold a slot."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Stop the workers after the last trial; called once at the end."""

    def abort(self) -> None:
        """Stop everything now (a second Ctrl-C, an error in the loop); by default the same as shutdown."""
        self.shutdown()
