"""Synchronous Hyperband with hpbandster's bracket arithmetic."""

from __future__ import annotations

import math

import numpy as np

from reidplug.core.hookspecs import hookimpl
from reidplug.core.plural import plural
from reidplug.core.scheduler import Scheduler
from reidplug.core.trial import Decision, Trial, TrialStatus
from reidplug.plugins.schedulers._rungs import check_pausable, end_paused, searcher_budgets


def num_brackets(min_budget: float, max_budget: float, eta: float) -> int:
    """hpbandster's max_SH_iter: -int(log(min/max) / log(eta)) + 1."""
    ratio = math.log(min_budget / max_budget) / math.log(eta)
    # An exact power of eta can come out a hair above the integer (log(1/1000)/log(10) gives
    # -2.9999999999999996); hpbandster then loses its smallest budget, we do not.
    if abs(ratio - round(ratio)) < 1e-9:
        ratio = round(ratio)
    return -int(ratio) + 1


def hyperband_brackets(min_budget: float, max_budget: float, eta: float = 3) -> list[dict]:
    """Every bracket of one Hyperband iteration, largest first: {"s", "ns", "budgets"} (budgets as floats)."""
    if not 0 < min_budget <= max_budget:
        raise ValueError(f"need 0 < MIN_BUDGET <= MAX_BUDGET, got {min_budget} and {max_budget}")
    if eta <= 1:
        raise ValueError(f"ETA must be above 1, got {eta}")
    n = num_brackets(min_budget, max_budget, eta)
    budgets = max_budget * np.power(float(eta), -np.linspace(n - 1, 0, n))
    out = []
    for s in range(n - 1, -1, -1):
        n0 = int(math.floor(n / (s + 1)) * eta**s)
        ns = [max(int(n0 * eta ** (-i)), 1) for i in range(s + 1)]
        out.append({"s": s, "ns": ns, "budgets": [float(b) for b in budgets[n - 1 - s:]]})
    return out


def step_budgets(budgets: list[float]) -> list[int]:
    """Budgets as whole steps: rounded half up, at least 1; a collision after rounding is an error."""
    steps = [max(1, int(math.floor(b + 0.5 + 1e-9))) for b in budgets]
    for a, b in zip(steps, steps[1:]):
        if b <= a:
            raise ValueError(
                f"budgets {[round(x, 3) for x in budgets]} collide once rounded to whole steps {steps}; "
                "raise ETA or MAX_BUDGET"
            )
    return steps


class HyperbandScheduler(Scheduler):
    """Successive halving in hpbandster's brackets, one iteration after another; see docs/schedulers.md.

    Stage j of an iteration runs its trials to budgets[j] steps and pauses them; when
    every trial of the stage has reported (a failed one counts as worst), the top
    ns[j+1] resume to the next budget and the rest are ended. When no iteration has
    anything to launch, the next iteration starts, so brackets overlap instead of idling.
    """

    OPTIONS = {"MIN_BUDGET": 1, "MAX_BUDGET": 0, "ETA": 3}

    # The annotations are the option types: ETA may be any number above 1, as in hpbandster.
    def __init__(self, searcher, *, min_budget: int = 1, max_budget: int = 0, eta: float = 3, **kwargs):
        super().__init__(searcher, **kwargs)
        max_budget = max_budget or self.max_steps
        if min_budget < 1:
            raise ValueError(f"MIN_BUDGET must be at least 1 step, got {min_budget}")
        if max_budget > self.max_steps:
            raise ValueError(f"MAX_BUDGET {max_budget} is above the experiment's {plural(self.max_steps, 'step')}")
        self.min_budget, self.max_budget, self.eta = min_budget, max_budget, eta
        self.brackets = hyperband_brackets(min_budget, max_budget, eta)
        for bracket in self.brackets:
            bracket["steps"] = step_budgets(bracket["budgets"])
        self.iterations: list[dict] = []  # the active ones, oldest first
        self.iteration_of: dict[int, int] = {}  # trial id -> iteration number, for active iterations
        self.to_end: set[int] = set()  # not promoted; ended once paused
        self._count = 0  # iterations started

    def setup(self, experiment):
        super().setup(experiment)
        check_pausable(experiment, type(self).__name__.replace("Scheduler", ""))
        searcher_budgets(self.searcher, self.brackets[0]["steps"])

    # ------------------------------------------------------------------ iterations

    def _start_iteration(self) -> dict:
        bracket = self.brackets[self._count % len(self.brackets)]
        it = {"i": self._count, "s": bracket["s"], "ns": list(bracket["ns"]), "steps": list(bracket["steps"]),
              "stage": 0, "target": bracket["ns"][0], "members": [], "scores": {}, "queue": []}
        self._count += 1
        self.iterations.append(it)
        return it

    def _iteration(self, trial_id: int) -> dict | None:
        i = self.iteration_of.get(trial_id)
        if i is None:
            return None
        return next((it for it in self.iterations if it["i"] == i), None)

    def _budget(self, it: dict) -> int:
        return it["steps"][it["stage"]]

    # ------------------------------------------------------------------ decisions

    def on_result(self, trial: Trial, result: dict) -> Decision:
        it = self._iteration(trial.id)
        if it is None or trial.id not in it["members"]:
            return Decision.CONTINUE  # not ours (e.g. created before a resume of another search)
        step = int(result["step"])
        budget = self._budget(it)
        if step < budget:
            return Decision.CONTINUE
        it["scores"][trial.id] = self._rung_score(trial, budget, self.score(result))
        info = {"bracket": it["s"], "iteration": it["i"], "budget": budget}
        last = it["stage"] == len(it["steps"]) - 1
        if last:
            self.last_info = {"reason": f"done at budget {budget}", **info}
            decision = Decision.STOP
        else:
            decision = Decision.PAUSE
            self.last_info = {"reason": f"paused at budget {budget}", **info}
        promoted = self._advance(it, current=trial)
        if not last and promoted is not None:
            # The last trial of its stage: it goes on (or ends) without a round trip through a pause.
            if trial.id in promoted:
                it["queue"].remove(trial.id)
                decision = Decision.CONTINUE
                self.last_info = {"reason": f"promoted at budget {budget}", **info}
            else:
                decision = Decision.STOP
                self.last_info = {"reason": f"not promoted at budget {budget}", **info}
        # Paused trials that were not promoted are ended by next_trial, which runs as soon as a
        # slot frees: a decision stays cheap even when it closes a stage of hundreds of trials.
        return decision

    def _rung_score(self, trial: Trial, budget: int, score: float) -> float:
        """What a trial is ranked by at a budget: its score (BOHB: where its learning curve is heading)."""
        return score

    def _advance(self, it: dict, current: Trial | None = None) -> list[int] | None:
        """Close the stage if every member has reported: promote the best, mark the rest. Returns the promoted."""
        if len(it["members"]) < it["target"] or len(it["scores"]) < len(it["members"]):
            return None
        trials = self.experiment.trials
        if it["stage"] == len(it["steps"]) - 1:
            self._close(it)
            return []
        j = it["stage"]
        n, k = len(it["members"]), it["ns"][j + 1]
        if n < it["ns"][j]:
            # The stage was cut short (no more trials may be created): promote in proportion.
            k = max(1, (n * k) // it["ns"][j])
        alive = [t for t in it["members"] if not trials[t].status.done or trials[t] is current]
        ranked = sorted(alive, key=lambda t: (-it["scores"][t], t))
        promoted = [t for t in ranked[:k] if it["scores"][t] > float("-inf")]
        for tid in it["members"]:
            if tid not in promoted:
                self.iteration_of.pop(tid, None)
                if current is None or tid != current.id:
                    self.to_end.add(tid)
        if not promoted:
            self._close(it)
            return promoted
        it["stage"] = j + 1
        it["target"] = len(promoted)
        it["members"] = list(promoted)
        it["scores"] = {}
        it["queue"] = list(promoted)
        return promoted

    def _close(self, it: dict) -> None:
        self.iterations.remove(it)
        for tid in it["members"]:
            self.iteration_of.pop(tid, None)

    def _record_gone(self, trial: Trial) -> None:
        """A member that ended before reaching its budget counts as the worst of its stage."""
        self.to_end.discard(trial.id)
        it = self._iteration(trial.id)
        if it is None or trial.id not in it["members"] or trial.id in it["scores"]:
            return
        it["scores"][trial.id] = float("-inf")
        if trial.id in it["queue"]:
            it["queue"].remove(trial.id)
        self._advance(it)

    def on_complete(self, trial: Trial) -> None:
        self._record_gone(trial)

    def on_error(self, trial: Trial) -> None:
        self._record_gone(trial)

    def wants_checkpoint(self, trial: Trial, step: int) -> bool:
        it = self._iteration(trial.id)
        return it is not None and step == self._budget(it) and it["stage"] < len(it["steps"]) - 1

    # ------------------------------------------------------------------ what to launch

    def _end_paused(self) -> None:
        end_paused(self.experiment, self.to_end)

    def next_trial(self):
        self._end_paused()
        exp = self.experiment
        trials = exp.trials
        for it in list(self.iterations):
            if it["stage"] == 0 and len(it["members"]) < it["target"] and not exp.can_create():
                it["target"] = len(it["members"])  # no more trials will join this stage
                if not it["members"]:
                    self._close(it)
                    continue
                self._advance(it)
                self._end_paused()
                if it not in self.iterations:
                    continue
            for tid in list(it["queue"]):
                t = trials[tid]
                if t.status == TrialStatus.PAUSED:
                    it["queue"].remove(tid)
                    return t
            if it["stage"] == 0 and len(it["members"]) < it["target"]:
                return self._create(it)
        if exp.can_create():
            return self._create(self._start_iteration())
        return None

    def _create(self, it: dict) -> Trial | None:
        trial = self.new_trial()
        if trial is None:
            return None
        it["members"].append(trial.id)
        self.iteration_of[trial.id] = it["i"]
        if trial.status.done:  # a rejected configuration
            self._record_gone(trial)
        return trial

    # ------------------------------------------------------------------ state

    def plan(self) -> list[dict]:
        """The brackets of one iteration, with budgets in steps."""
        return [dict(b) for b in self.brackets]

    def state_dict(self) -> dict:
        return {"iterations": [dict(it, members=list(it["members"]), scores=dict(it["scores"]), queue=list(it["queue"]))
                               for it in self.iterations],
                "iteration_of": dict(self.iteration_of), "to_end": set(self.to_end), "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        self.iterations = [dict(it) for it in state["iterations"]]
        self.iteration_of = dict(state["iteration_of"])
        self.to_end = set(state["to_end"])
        self._count = state["count"]


@hookimpl
def register_schedulers(register):
    register("hyperband", HyperbandScheduler, description="synchronous Hyperband (hpbandster's brackets)")
