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
    model can register them as its own suggestions. `self.space` is a
    `SearchSpace` of domains (`Choice`, `Uniform`, `LogUniform`, `QUniform`,
    `QLogUniform`, `RandInt`); `rng()` is the searcher's own random generator.

    Constructor arguments: `space`; `metric` and `mode` ("max" or "min") say what
    is optimised; `seed` is TUNE.SEED; `points_to_evaluate` are the warm-start
    points; `max_concurrent` is how many suggestions may be outstanding;
    `num_trials` is the trial budget (None: unbounded). Options of the searcher's
    TUNE.<NAME> section come as lower-case keyword arguments.
    """

    #: Option name (upper case) -> default; set in the config section TUNE.<NAME>.
    OPTIONS: dict[str, Any] = {}

    #: True once the searcher has nothing more to propose (a used-up grid): no more trials.
    finished: bool = False

    #: Classes ("module:QualName") that state_dict() may hold besides plain data; the journal
    #: loads those, and only those, with a restricted unpickler (see reidplug.core.state).
    STATE_TYPES: tuple[str, ...] = ()

    _generator: np.random.Generator | None = None  # made by rng() on first use

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
        """The parameters for trial `trial_id` (warm-start points first), or None for "nothing now"."""
        if self._points:
            params = self._points.pop(0)
            self._observe_point(trial_id, params)
        else:
            params = self._suggest(trial_id)
        if params is not None:
            self.live[trial_id] = params
        return params

    def _suggest(self, trial_id: int) -> dict | None:
        """Implement this: a dict {name: value} with a value of each domain of `self.space`, or None."""
        raise NotImplementedError

    def _observe_point(self, trial_id: int, params: dict) -> None:
        """A warm-start point is being tried as `trial_id`."""

    # -- tell
    def on_result(self, trial_id: int, result: dict) -> None:
        """An intermediate result; most searchers only learn from completed trials."""

    def on_complete(self, trial_id: int, result: dict | None = None, error: bool = False) -> None:
        """Trial `trial_id` ended: `result` is its last result (None if it had none), `error` True if it
        failed. Overrides call `super().on_complete(...)`, which forgets the outstanding suggestion."""
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
        """This searcher's random generator: one object, seeded once from `seed`, so that each
        call continues the same stream (two draws never repeat just because they are two calls).

        The generator's state is part of the base `state_dict()` (key "generator") and is
        restored by `load_state_dict()`, so a resumed search draws what the uninterrupted one
        would have. Keep the generator itself, not a copy: `rng().random()` is fine, and so is
        `self._r = self.rng()` in `__init__`. With `seed=None` it starts from fresh entropy.
        """
        if self._generator is None:
            self._generator = np.random.default_rng(self.seed)
        return self._generator

    def close(self) -> None:
        """Release threads or processes the searcher started; called when the experiment ends."""

    # -- state
    def state_dict(self) -> dict:
        """Everything needed to continue after a crash, as plain data (or objects of STATE_TYPES).

        Subclasses extend it: `return {**super().state_dict(), "mine": ...}`. The base keys are
        "points" (warm-start points not yet handed out), "live" (outstanding suggestions) and,
        once `rng()` has been used, "generator" (its bit generator's state).
        """
        state = {"points": list(self._points), "live": dict(self.live)}
        if self._generator is not None:
            state["generator"] = self._generator.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict()` returned, into a searcher built with the same arguments."""
        self._points = list(state.get("points", []))
        self.live = dict(state.get("live", {}))
        if "generator" in state:
            self.rng().bit_generator.state = state["generator"]
