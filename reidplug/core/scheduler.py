"""The Scheduler base class: which trials run, pause, stop or exploit, at what budget."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reidplug.core.trial import Decision, Trial, TrialStatus

if TYPE_CHECKING:  # pragma: no cover
    from reidplug.core.experiment import Experiment
    from reidplug.core.searcher import Searcher


class Scheduler:
    """Decides, result by result, what each trial does next. Holds the searcher.

    How the experiment drives a scheduler::

        scheduler = Cls(searcher, metric="score", mode="max", max_steps=T, seed=0, **options)
        scheduler.setup(experiment)              # the trial table, trial creation, checkpoints
        while not scheduler.is_finished():
            trial = scheduler.next_trial()       # a new trial, a paused one to resume, or None
            ...run one budget unit (a step) of some running trial...
            decision = scheduler.on_result(trial, result)   # CONTINUE, PAUSE or STOP
            scheduler.on_complete(trial) / scheduler.on_error(trial)

    A step is TUNE.STEP_EPOCHS epochs for Re-ID trials; budgets count steps.
    `result["step"]` is the number of steps the trial has completed. A trial that
    reaches `max_steps` is completed by the experiment whatever the decision.

    PAUSE saves the trial and frees its slot; `next_trial` may return it later
    and it restarts from its newest intact checkpoint. For PBT's exploit, call
    `experiment.exploit(recipient, donor, new_params)` inside `on_result` and
    return PAUSE: the recipient gets a copy of the donor's checkpoint (weights,
    optimizer, LR schedule, scaler, epoch) and restarts from it when `next_trial`
    returns it. A paused trial that will never resume is ended with
    `experiment.terminate(trial, reason)`. Checkpoints named by
    `pinned_checkpoints()` (if defined) are never deleted.
    """

    #: Option name (upper case) -> default; set in the config section TUNE.<NAME>.
    OPTIONS: dict[str, Any] = {}

    #: Whether it needs a step budget: a function trainable with TUNE.MAX_STEPS 0 runs until it
    #: returns (max_steps 0 here), which only schedulers that set this False accept.
    NEEDS_MAX_STEPS: bool = True

    #: Extra facts about the latest decision (e.g. {"rung": 2}); journaled and shown to reporters.
    last_info: dict | None = None

    #: Classes ("module:QualName") that state_dict() may hold besides plain data; the journal
    #: loads those, and only those, with a restricted unpickler (see reidplug.core.state).
    STATE_TYPES: tuple[str, ...] = ()

    def __init__(self, searcher: Searcher, *, metric="score", mode="max", max_steps: int = 1, seed: int | None = 0):
        self.searcher = searcher
        self.metric = metric
        self.mode = mode
        self.max_steps = max(int(max_steps), 1)
        self.seed = seed
        self.experiment: Experiment | None = None

    def setup(self, experiment: Experiment) -> None:
        """Called once before the first trial, with the `Experiment` (trial table, trial creation)."""
        self.experiment = experiment

    # -- what to launch
    def next_trial(self) -> Trial | None:
        """Resume a paused trial or create a new one from the searcher; None for nothing now."""
        return self.new_trial()

    def new_trial(self, **kwargs) -> Trial | None:
        """A new trial with the searcher's next suggestion; None when the budget or the searcher says no."""
        exp = self.experiment
        if not exp.can_create():
            return None
        trial_id = exp.next_trial_id()
        params = self.searcher.suggest(trial_id)
        if params is None:
            return None
        return exp.create_trial(params, trial_id=trial_id, **kwargs)

    # -- decisions
    def on_result(self, trial: Trial, result: dict) -> Decision:
        """One result of `trial` (`result["step"]` steps done): CONTINUE, PAUSE or STOP."""
        return Decision.CONTINUE

    def on_complete(self, trial: Trial) -> None:
        """The trial ended without error (budget spent or stopped)."""

    def on_error(self, trial: Trial) -> None:
        """The trial failed for good."""

    def wants_checkpoint(self, trial: Trial, step: int) -> bool:
        """Whether the trial must save a checkpoint after reaching `step`."""
        return False

    def is_finished(self) -> bool:
        """True when no trial can be created and none is pending, running or paused: the search ends."""
        exp = self.experiment
        return not exp.can_create() and not any(
            t.status in (TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED) for t in exp.trials.values()
        )

    # -- helpers
    def score(self, result: dict | None) -> float:
        """The metric oriented so that larger is better (-inf when missing)."""
        if not result:
            return float("-inf")
        value = result.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return float("-inf")
        return float(value) if self.mode == "max" else -float(value)

    def state_dict(self) -> dict:
        """Everything needed to continue after a crash, as plain data (or objects of STATE_TYPES)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict()` returned (on resume, after `setup`)."""
