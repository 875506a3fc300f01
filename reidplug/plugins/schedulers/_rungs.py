"""Helpers shared by the multi-fidelity schedulers: rung levels, ranked scores, checks."""

from __future__ import annotations

import bisect
import heapq
from array import array
import inspect
import math

from reidplug.core.errors import ConfigError
from reidplug.core.trial import TrialStatus


def rung_levels(grace: int, rf: int, max_t: int, offset: int = 0) -> list[int]:
    """Steps `grace * rf**(k + offset)` below `max_t`, k = 0, 1, ..."""
    levels = []
    k = offset
    while True:
        level = grace * rf**k
        if level >= max_t:
            return levels
        levels.append(level)
        k += 1


class Rung:
    """Scores recorded at one budget; ranks and quantiles in O(log n).

    Ranks are by score, larger first; equal scores rank the older (lower) trial id first.
    """

    def __init__(self, level: int):
        self.level = level
        self.scores: dict[int, float] = {}
        self._ranked: list[tuple[float, int]] = []  # (-score, trial id), best first
        self._waiting: list[tuple[float, int]] = []  # heap of trials that may still be promoted
        self.promoted: set[int] = set()
        # The same facts in arrival order, as flat arrays: the state journaled after every
        # result stores them as raw bytes, which stays cheap with thousands of trials.
        self._log_ids = array("q")
        self._log_scores = array("d")
        self._log_waiting = array("b")
        self._log_promoted = array("q")

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, trial_id: int) -> bool:
        return trial_id in self.scores

    def add(self, trial_id: int, score: float, *, waiting: bool = False) -> None:
        self.scores[trial_id] = score
        key = (-score, trial_id)
        bisect.insort(self._ranked, key)
        if waiting:
            heapq.heappush(self._waiting, key)
        self._log_ids.append(trial_id)
        self._log_scores.append(score)
        self._log_waiting.append(int(waiting))

    def arrival(self, back: int) -> int | None:
        """The trial that arrived `back` arrivals before the latest (0: the latest), None if none did."""
        i = len(self._log_ids) - 1 - back
        return self._log_ids[i] if i >= 0 else None

    def promoted_recently(self, window: int) -> int:
        """How many of the last `window` arrivals have been promoted."""
        promoted = self.promoted
        return sum(1 for tid in self._log_ids[-window:] if tid in promoted)

    def rank(self, trial_id: int) -> int:
        """0 for the best trial of the rung."""
        return bisect.bisect_left(self._ranked, (-self.scores[trial_id], trial_id))

    def ranked(self) -> list[int]:
        return [tid for _, tid in self._ranked]

    def recent_quantile(self, q: float, window: int) -> float | None:
        """The q-quantile (as `quantile`) of the last `window` scores recorded, in arrival order."""
        recent = sorted(self._log_scores[-window:])
        if not recent:
            return None
        pos = q * (len(recent) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return recent[lo] + (recent[hi] - recent[lo]) * (pos - lo)

    def quantile(self, q: float) -> float | None:
        """The q-quantile of the scores with linear interpolation (numpy's default); None when empty."""
        n = len(self._ranked)
        if n == 0:
            return None
        pos = q * (n - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        # _ranked is descending in score: ascending index i sits at n - 1 - i.
        a, b = -self._ranked[n - 1 - lo][0], -self._ranked[n - 1 - hi][0]
        return a + (b - a) * (pos - lo)

    def promotable(self, rf: int, usable, floor: float | None = None, ranked: bool = True) -> int | None:
        """The best waiting trial within the top `len // rf` for which `usable(tid)` holds, else None.

        With a `floor`, only trials scoring at least that much qualify; with `ranked` false, the
        floor alone decides (no rank among the whole rung).

        `usable` returns True (take it), False (skip it for now) or None (drop it for good).
        The trial found stays waiting until `promote` is called for it.
        """
        top = len(self.scores) // rf if ranked else len(self.scores)
        skipped = []
        found = None
        while self._waiting:
            key = self._waiting[0]
            tid = key[1]
            if tid in self.promoted:
                heapq.heappop(self._waiting)
                continue
            if bisect.bisect_left(self._ranked, key) >= top or (floor is not None and -key[0] < floor):
                break
            verdict = usable(tid)
            if verdict:
                found = tid  # stays in the heap until promote() marks it
                break
            heapq.heappop(self._waiting)
            if verdict is False:
                skipped.append(key)
        for key in skipped:
            heapq.heappush(self._waiting, key)
        return found

    def best_waiting(self, usable) -> int | None:
        """The best waiting trial for which `usable(tid)` is true, whatever its rank (not removed)."""
        for key in sorted(self._waiting):
            if key[1] not in self.promoted and usable(key[1]):
                return key[1]
        return None

    def waiting(self) -> list[int]:
        """Trials that may still be promoted, best first."""
        return [tid for _, tid in sorted(self._waiting) if tid not in self.promoted]

    def promote(self, trial_id: int) -> None:
        if trial_id not in self.promoted:
            self.promoted.add(trial_id)
            self._log_promoted.append(trial_id)

    def state(self) -> dict:
        return {"level": self.level, "ids": self._log_ids[:], "scores": self._log_scores[:],
                "waiting": self._log_waiting[:], "promoted": self._log_promoted[:]}

    @classmethod
    def from_state(cls, state: dict) -> Rung:
        rung = cls(state["level"])
        for tid, score, waiting in zip(state["ids"], state["scores"], state["waiting"]):
            rung.add(tid, score, waiting=bool(waiting))
        for tid in state["promoted"]:
            rung.promote(tid)
        return rung


def check_pausable(experiment, scheduler_name: str) -> None:
    """Pausing schedulers need a trainable that can save and load; a plain function cannot."""
    ref = experiment.trainable
    if isinstance(ref, str):
        if ":" not in ref:
            return  # registered trainables (reid, noop, ...) implement save/load
        from reidplug.core.registry import resolve

        try:
            ref = resolve(ref)
        except Exception:  # reported elsewhere
            return
    if inspect.isfunction(ref) or inspect.ismethod(ref):
        key = "TUNE.SCHEDULER"
        raise ConfigError(
            f"{scheduler_name} pauses and resumes trials, which needs a Trainable class with save/load; "
            f"{getattr(ref, '__qualname__', ref)!r} is a function",
            file=experiment.origins.of(key),
            key=key,
        )


def searcher_budgets(searcher, budgets) -> None:
    """Tell a multi-fidelity searcher (BOHB's model) which steps are budgets worth modelling."""
    setter = getattr(searcher, "set_budgets", None)
    if setter is not None:
        setter(sorted(set(int(b) for b in budgets)))


def end_paused(experiment, to_end: set) -> None:
    """End the trials of `to_end` that are paused (reason "not promoted"); forget those already done."""
    trials = experiment.trials
    for tid in sorted(to_end):
        t = trials.get(tid)
        if t is None or t.status.done:
            to_end.discard(tid)
        elif t.status == TrialStatus.PAUSED:
            to_end.discard(tid)
            experiment.terminate(t, reason="not promoted")
