"""Asynchronous BOHB: ASHA's promotions over synchronous cohorts, with BOHB's KDE model."""

from __future__ import annotations

import math

from reidplug.core.hookspecs import hookimpl
from reidplug.plugins.schedulers._rungs import end_paused
from reidplug.plugins.schedulers.asha import ASHAScheduler
from reidplug.plugins.schedulers.bohb import KDE_KEYS, curve_score, kde_searcher
from reidplug.plugins.searchers.bohb import KDE_OPTIONS


class BOHBAsyncScheduler(ASHAScheduler):
    """ASHA whose new configurations come from BOHB's kernel-density model.

    TYPE promotion (the default) with COHORTS: rung k of a bracket promotes a paused
    trial only once n_k trials have arrived there, n_k being the size synchronous
    BOHB's stage would have, and only from the best 1/REDUCTION_FACTOR of the last
    n_k arrivals (WHOLE_RUNG: and, by ASHA's own rule, from the best
    1/REDUCTION_FACTOR of all the rung holds). Each decision is then the one a
    synchronous stage would take over its latest cohort, but taken as soon as a
    trial arrives, never waiting for stragglers; a paused trial that leaves the
    latest cohort unpromoted is ended, as a stage ends the trials it does not
    promote. With QUOTA, no more than n_k // REDUCTION_FACTOR of the last n_k
    arrivals are promoted: the cohort slides one arrival at a time, and without a
    quota it lets through more than the third a stage would. Without the cohort,
    the model's proposals beat the rung's early random members and nearly all of
    them are promoted (COHORTS false: ASHA's promotion rule as published).

    With TYPE stop, a trial arriving at a rung is compared with the last WINDOW trials
    recorded there, not with all of them, for the same reason (0: the whole history).
    """

    OPTIONS = {**ASHAScheduler.OPTIONS, **KDE_OPTIONS, "TYPE": "promotion", "COHORTS": True,
               "WHOLE_RUNG": False, "QUOTA": True, "WINDOW": 9}

    def __init__(self, searcher, *, type: str = "promotion", cohorts: bool = True, whole_rung: bool = False,
                 quota: bool = True, window=9, **kwargs):
        kde = {k: kwargs.pop(k) for k in KDE_KEYS if k in kwargs}
        super().__init__(searcher, type=type, **kwargs)
        if window < 0:
            raise ValueError(f"WINDOW cannot be negative (0: the whole rung), got {window}")
        self.window = int(window)
        self.cohorts = bool(cohorts)
        self.whole_rung = bool(whole_rung)
        self.quota = bool(quota)
        self._counts = None  # new trials per bracket; rebuilt from bracket_of after a resume
        self.to_end: set[int] = set()  # paused trials that left their cohort unpromoted
        self.searcher = kde_searcher(searcher, kde, "bohb_async")

    def _rung_score(self, trial, level, score):
        return curve_score(self.searcher, trial, level, score)

    def _assign(self) -> int:
        # Brackets get new trials in Hyperband's proportions (81:27:9:6:5 for five brackets of
        # eta 3), so each spends about the same budget, as in synchronous BOHB; round robin
        # would give the brackets that start at the top most of the budget.
        if len(self.levels) == 1:
            return 0
        if self._counts is None:
            self._counts = [0] * len(self.levels)
            for b in self.bracket_of:
                if b >= 0:
                    self._counts[b] += 1
        weights = [self._cohort(i, 0) for i in range(len(self.levels))]
        b = min(range(len(self.levels)), key=lambda i: (self._counts[i] / weights[i], i))
        self._counts[b] += 1
        return b

    def state_dict(self) -> dict:
        return {**super().state_dict(), "to_end": set(self.to_end)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._counts = None
        self.to_end = set(state.get("to_end", ()))

    def _arrived(self, bracket: int, k: int) -> None:
        if self.cohorts and self.experiment.can_create():
            # A synchronous stage ends the trials it does not promote. The trial that has just left
            # the latest cohort of this rung unpromoted is ended likewise (at the next launch), so
            # that paused trials and their checkpoints do not pile up for the rest of the search.
            rung = self.rungs[bracket][k]
            left = rung.arrival(self._cohort(bracket, k))
            if left is not None and left not in rung.promoted:
                self.to_end.add(left)

    def next_trial(self):
        end_paused(self.experiment, self.to_end)
        return super().next_trial()

    def _cohort(self, bracket: int, k: int) -> int:
        """Synchronous BOHB's number of trials at stage k of the bracket (81, 27, 9, 3 for eta 3)."""
        m = len(self.levels[bracket])
        n0 = ((len(self.levels[0]) + 1) // (m + 1)) * self.rf**m
        return max(n0 // self.rf**k, 1)

    def _min_rung(self, bracket: int, k: int) -> int:
        # The first promotions are the best of a full cohort, not of the first three arrivals.
        # Once no trial may be created, rungs cannot fill: ASHA's rule over what they hold.
        if not self.cohorts or not self.experiment.can_create():
            return 0
        return self._cohort(bracket, k)

    def _promotion_floor(self, bracket: int, k: int) -> float | None:
        if not self.cohorts:
            return None
        n, rung = self._cohort(bracket, k), self.rungs[bracket][k]
        # The quota keeps budget for new configurations; once none may start, it would only idle slots.
        if self.quota and self.experiment.can_create() and rung.promoted_recently(n) >= max(n // self.rf, 1):
            return math.inf
        return rung.recent_quantile(1.0 - 1.0 / self.rf, n)

    def _ranks_whole_rung(self) -> bool:
        # A rung's early arrivals and its later ones are not alike: the first are random, and
        # where low budgets mislead (fast learners ahead early), the model's later proposals
        # rank below them at the first rung. Ranked against the whole rung as well, most of
        # the cohort's best third stops there, and the budget piles up at the first rung.
        return self.whole_rung or not self.cohorts

    def _cutoff(self, rung):
        if not self.window:
            return super()._cutoff(rung)
        return rung.recent_quantile(1.0 - 1.0 / self.rf, self.window), f" of the last {self.window}"

    def setup(self, experiment):
        experiment.searcher = self.searcher
        super().setup(experiment)


@hookimpl
def register_schedulers(register):
    register("bohb_async", BOHBAsyncScheduler, description="asynchronous BOHB: ASHA's promotions over BOHB's cohorts")
