"""Asynchronous successive halving (ASHA): Ray's stopping rule or Li et al.'s promotions."""

from __future__ import annotations

from array import array

from reidplug.core.hookspecs import hookimpl
from reidplug.core.plural import plural
from reidplug.core.scheduler import Scheduler
from reidplug.core.trial import Decision, Trial, TrialStatus
from reidplug.plugins.schedulers._rungs import Rung, check_pausable, rung_levels, searcher_budgets


class ASHAScheduler(Scheduler):
    """Rungs at GRACE_PERIOD * REDUCTION_FACTOR**k steps below MAX_T; see docs/schedulers.md.

    TYPE "stop": a trial arriving at a rung for the first time stops when its score
    is below the (1 - 1/rf) quantile of the scores recorded there before it.
    TYPE "promotion": trials pause at each rung; a paused trial resumes when it is
    in the top len(rung) // rf of its rung, in preference to starting new trials.
    """

    OPTIONS = {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 4, "MAX_T": 0, "BRACKETS": 1, "TYPE": "stop"}

    def __init__(self, searcher, *, grace_period: int = 1, reduction_factor: int = 4, max_t: int = 0,
                 brackets: int = 1, type: str = "stop", **kwargs):
        super().__init__(searcher, **kwargs)
        if grace_period < 1:
            raise ValueError(f"GRACE_PERIOD must be at least 1 step, got {grace_period}")
        if reduction_factor < 2:
            raise ValueError(f"REDUCTION_FACTOR must be at least 2, got {reduction_factor}")
        if max_t < 0 or max_t > self.max_steps:
            raise ValueError(f"MAX_T must be between 1 and the experiment's {plural(self.max_steps, 'step')} "
                             f"(0: all), got {max_t}")
        if type not in ("stop", "promotion"):
            raise ValueError(f"TYPE must be 'stop' or 'promotion', got {type!r}")
        self.grace = int(grace_period)
        self.rf = int(reduction_factor)
        self.max_t = int(max_t) or self.max_steps
        self.type = type
        levels = rung_levels(self.grace, self.rf, self.max_t)
        if brackets < 1 or brackets > len(levels) + 1:
            raise ValueError(f"BRACKETS must be between 1 and {len(levels) + 1} (rungs below MAX_T, plus one), got {brackets}")
        # Bracket s starts s rungs higher, as in asynchronous Hyperband.
        self.levels = [rung_levels(self.grace, self.rf, self.max_t, offset=s) for s in range(int(brackets))]
        self.rungs = [[Rung(level) for level in levels] for levels in self.levels]
        self.bracket_of = array("b")  # by trial id; -1: not assigned yet
        self._assigned = 0

    def setup(self, experiment):
        super().setup(experiment)
        if self.type == "promotion":
            check_pausable(experiment, "ASHA with TYPE promotion")
        searcher_budgets(self.searcher, [lvl for levels in self.levels for lvl in levels] + [self.max_t])

    # ------------------------------------------------------------------ brackets

    def _bracket(self, trial_id: int) -> int:
        if len(self.levels) == 1:
            return 0
        if trial_id >= len(self.bracket_of):
            self.bracket_of.extend([-1] * (trial_id + 1 - len(self.bracket_of)))
        b = self.bracket_of[trial_id]
        if b < 0:
            b = self.bracket_of[trial_id] = self._assign()
            self._assigned += 1
        return b

    def _assign(self) -> int:
        """The bracket of the next new trial: round robin, as asynchronous Hyperband."""
        return self._assigned % len(self.levels)

    def new_trial(self, **kwargs):
        trial = super().new_trial(**kwargs)
        if trial is not None:
            self._bracket(trial.id)
        return trial

    # ------------------------------------------------------------------ decisions

    def on_result(self, trial: Trial, result: dict) -> Decision:
        step = int(result["step"])
        if step >= self.max_t:
            self.last_info = {"reason": "max_t", "max_t": self.max_t}
            return Decision.STOP
        b = self._bracket(trial.id)
        score = self.score(result)
        if self.type == "stop":
            return self._stop_rule(trial, b, step, score)
        return self._promotion_rule(trial, b, step, score)

    def _stop_rule(self, trial, b, step, score) -> Decision:
        # Only the highest rung the trial has reached and not yet been recorded at counts (as in Ray).
        for rung in reversed(self.rungs[b]):
            if step < rung.level or trial.id in rung:
                continue
            cutoff, of_what = self._cutoff(rung)
            score = self._rung_score(trial, rung.level, score)
            rung.add(trial.id, score)
            info = {"rung": rung.level, "bracket": b, "cutoff": cutoff, "rung_size": len(rung)}
            if cutoff is not None and score < cutoff:
                self.last_info = {"reason": f"below the rung {rung.level} cutoff{of_what}", **info}
                return Decision.STOP
            self.last_info = {"reason": f"passed rung {rung.level}", **info}
            return Decision.CONTINUE
        return Decision.CONTINUE

    def _cutoff(self, rung) -> tuple[float | None, str]:
        """The score a trial arriving at `rung` must reach (None: no cut yet), and what it is taken over."""
        return rung.quantile(1.0 - 1.0 / self.rf), ""

    def _promotion_rule(self, trial, b, step, score) -> Decision:
        rung = next((r for r in self.rungs[b] if r.level == step), None)
        if rung is None or trial.id in rung:
            return Decision.CONTINUE
        score = self._rung_score(trial, step, score)
        rung.add(trial.id, score, waiting=True)
        self._arrived(b, self.rungs[b].index(rung))
        info = {"rung": rung.level, "bracket": b, "rank": rung.rank(trial.id), "rung_size": len(rung)}
        # The freed slot would go to the best promotable trial; if that is this one, skip the round trip.
        found = self._find_promotion(current=trial)
        if found is not None and found[0] is trial:
            found[1].promote(trial.id)
            self.last_info = {"reason": f"promoted from rung {rung.level}", **info}
            return Decision.CONTINUE
        self.last_info = {"reason": f"paused at rung {rung.level}", **info}
        return Decision.PAUSE

    def wants_checkpoint(self, trial: Trial, step: int) -> bool:
        if self.type != "promotion":
            return False
        return step in self.levels[self._bracket(trial.id)]

    # ------------------------------------------------------------------ what to launch

    def next_trial(self):
        if self.type == "stop":
            return self.new_trial()
        found = self._find_promotion()
        if found is not None:
            found[1].promote(found[0].id)
            return found[0]
        trial = self.new_trial()
        if trial is not None or self.experiment.can_create():
            return trial
        return self._drain()

    def _find_promotion(self, current: Trial | None = None) -> tuple[Trial, Rung] | None:
        """The trial to promote next and its rung: highest rung first (Li et al.); paused trials or `current`."""
        trials = self.experiment.trials

        def usable(tid):
            t = trials.get(tid)
            if t is None or t.status.done:
                return None
            return t is current or t.status == TrialStatus.PAUSED

        for k in range(max(len(levels) for levels in self.levels) - 1, -1, -1):
            for b, rungs in enumerate(self.rungs):
                if k < len(rungs) and len(rungs[k]) >= self._min_rung(b, k):
                    tid = rungs[k].promotable(self.rf, usable, self._promotion_floor(b, k),
                                              self._ranks_whole_rung())
                    if tid is not None:
                        return trials[tid], rungs[k]
        return None

    def _rung_score(self, trial: Trial, level: int, score: float) -> float:
        """What a trial is ranked by at a rung: its score (bohb_async: where its learning curve is heading)."""
        return score

    def _arrived(self, bracket: int, k: int) -> None:
        """A trial has just been recorded at rung k of the bracket, paused or about to be promoted."""

    def _min_rung(self, bracket: int, k: int) -> int:
        """How many trials rung k of a bracket holds before it promotes any (ASHA: no minimum)."""
        return 0

    def _promotion_floor(self, bracket: int, k: int) -> float | None:
        """The score a paused trial of rung k needs, besides its rank, to be promoted (ASHA: none)."""
        return None

    def _ranks_whole_rung(self) -> bool:
        """Whether a promotion also needs a place in the top 1/rf of all the rung holds (ASHA: yes)."""
        return True

    def _drain(self) -> Trial | None:
        """No new trials can start and nothing runs: carry the leader of the highest rung on, end the rest.

        Without this, a finite search with few trials could end with nobody past the
        first rungs (len // rf rounds down to zero).
        """
        trials = self.experiment.trials
        if any(t.status in (TrialStatus.RUNNING, TrialStatus.PENDING) for t in trials.values()):
            return None
        paused = lambda tid: trials[tid].status == TrialStatus.PAUSED  # noqa: E731
        leader = None
        for k in range(max(len(levels) for levels in self.levels) - 1, -1, -1):
            for rungs in self.rungs:
                if k < len(rungs):
                    tid = rungs[k].best_waiting(paused)
                    if tid is not None and (leader is None or rungs[k].scores[tid] > leader[1].scores[leader[0]]):
                        leader = (tid, rungs[k])
            if leader is not None:
                break
        if leader is None:
            return None
        tid, rung = leader
        rung.promote(tid)
        for other in list(trials.values()):
            if other.status == TrialStatus.PAUSED and other.id != tid:
                self.experiment.terminate(other, reason="not promoted")
        return trials[tid]

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            "rungs": [[r.state() for r in rungs] for rungs in self.rungs],
            "bracket_of": self.bracket_of[:],
            "assigned": self._assigned,
        }

    def load_state_dict(self, state: dict) -> None:
        self.rungs = [[Rung.from_state(r) for r in rungs] for rungs in state["rungs"]]
        self.bracket_of = array("b", state["bracket_of"])
        self._assigned = state["assigned"]


@hookimpl
def register_schedulers(register):
    register("asha", ASHAScheduler, description="asynchronous successive halving (stopping or promotion)")
