"""The Searcher base class: which configuration to try next (ask/tell)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reidplug.core.space import SearchSpace


class Searcher:
    """Proposes configurations; learns from results. Several suggestions may be outstanding.

    How the experiment loop drives a searcher::

        searcher = Cls(space, metric="score", mode="max", seed=0,
                       points_to_evaluate=[...], max_concurrent=2, **options)
        params = searcher.suggest(trial_id)       # a dict, or None for "nothing now"
        searcher.on_result(trial_id, result)      # every intermediate result
        searcher.on_complete(trial_id, result)    # final result; error=True if it failed
        state = searcher.state_dict()             # journaled; load_state_dict() on resume

    Subclasses implement `_suggest` (and usually `on_complete`). Warm-start points
    are handed out first by the base class, which calls `_observe_point` so that a
    model can register them as its own suggestions.
    """

    #: Option name (upper case) -> default; set in the config section TUNE.<NAME>.
    OPTIONS: dict[str, Any] = {}

    #: True once the searcher has nothing more to propose (a used-up grid): no more trials.
    finished: bool = False

    #: Classes ("module:QualName") that state_dict() may hold besides plain data; the journal
    #: loads those, and only those, with a restricted unpickler (see reidplug.core.state).
    STATE_TYPES: tuple[str, ...] = ()

    def __init__(
        self,
        space: SearchSpace,
        *,
        metric: str = "score",
        mode: str = "max",
        seed: int | None = None,
        points_to_evaluate=(),
        max_concurrent: int = 1,
        num_trials: int | None = None,
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.space = space
        self.metric = metric
        self.mode = mode
        self.seed = seed
        self.max_concurrent = max_concurrent
        self.num_trials = num_trials  # the experiment's trial budget, for searchers that plan with it
        self._points = [dict(p) for p in points_to_evaluate]
        self.live: dict[int, dict] = {}  # trial id -> params, for suggestions not yet completed

    # -- ask
    def suggest(self, trial_id: int) -> dict | None:
        if self._points:
            params = self._points.pop(0)
            self._observe_point(trial_id, params)
        else:
            params = self._suggest(trial_id)
        if params is not None:
            self.live[trial_id] = params
        return params

    def _suggest(self, trial_id: int) -> dict | None:
        raise NotImplementedError

    def _observe_point(self, trial_id: int, params: dict) -> None:
        """A warm-start point is being tried as `trial_id`."""

    # -- tell
    def on_result(self, trial_id: int, result: dict) -> None:
        """An intermediate result; most searchers only learn from completed trials."""

    def on_complete(self, trial_id: int, result: dict | None = None, error: bool = False) -> None:
        self.live.pop(trial_id, None)

    # -- helpers
    def loss(self, result: dict | None) -> float:
        """The value to minimise: the metric, negated for mode=max; +inf when missing or not finite."""
        if not result:
            return math.inf
        value = result.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return math.inf
        return -float(value) if self.mode == "max" else float(value)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def close(self) -> None:
        """Release threads or processes the searcher started; called when the experiment ends."""

    # -- state
    def state_dict(self) -> dict:
        """Everything needed to continue after a crash, as plain data (or objects of STATE_TYPES)."""
        return {"points": list(self._points), "live": dict(self.live)}

    def load_state_dict(self, state: dict) -> None:
        self._points = list(state.get("points", []))
        self.live = dict(state.get("live", {}))
