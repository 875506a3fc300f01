"""Any nevergrad optimizer, NGOpt by default."""

from __future__ import annotations

import copy
import difflib
import math
import threading
import warnings
import weakref

import numpy as np

from reidplug.core.errors import ConfigError
from reidplug.core.hookspecs import hookimpl
from reidplug.core.searcher import Searcher
from reidplug.core.space import Choice, RandInt

OPTION_KEY = "TUNE.NEVERGRAD.OPTIMIZER"
# NGOpt picks its algorithm from the budget and cannot go without one; this is the
# budget when neither BUDGET nor the number of trials is known.
FALLBACK_BUDGET = 100
# Told for a failure before any finite loss is known. Every candidate must be told:
# sequential optimizers (Cobyla, SQP, ...) wait for the last answer before asking again.
# Below nevergrad's own ceiling of 5e20, to which it clips larger losses with a warning.
FIRST_FAILURE_LOSS = 1.0e20


def failure_loss(best: float, worst: float) -> float:
    """The loss told for a failed trial: beyond the worst finite loss by the spread seen so far."""
    return worst + max(worst - best, 0.1 * abs(worst), 1e-6)


def nevergrad_parameter(domain):
    """The nevergrad parameter of one domain (quantizing is left to the domain)."""
    import nevergrad as ng

    if isinstance(domain, Choice):
        return ng.p.Choice(list(domain.values))
    if isinstance(domain, RandInt):
        # Bounds half a step out (less a hair) give every integer the same width after rounding.
        return ng.p.Scalar(lower=domain.low - 0.49, upper=domain.high - 0.51).set_integer_casting()
    if domain.log:
        return ng.p.Log(lower=domain.low, upper=domain.high)
    return ng.p.Scalar(lower=domain.low, upper=domain.high)


def _messaging_threads(opt, seen=None):
    """The background threads of the scipy-based optimizers inside `opt` (portfolios, chains, NGOpt)."""
    from nevergrad.optimization.base import Optimizer

    seen = set() if seen is None else seen
    if id(opt) in seen:
        return
    seen.add(id(opt))
    if getattr(opt, "_messaging_thread", None) is not None:
        yield opt._messaging_thread
    for value in vars(opt).values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, Optimizer):
                yield from _messaging_threads(item, seen)


def _close(ref) -> None:
    searcher = ref()
    if searcher is not None:
        searcher.close()


class NevergradSearcher(Searcher):
    """Ask/tell over a nevergrad optimizer chosen by name, with one candidate per running trial.

    nevergrad is promised at most `max_concurrent` candidates without an answer
    (its `num_workers`); past that, `suggest` returns None until a trial completes.
    A failed trial (error, or a missing or non-finite metric) is told `failure_loss`
    of the finite losses seen so far, so that the optimizer moves away from it, or
    FIRST_FAILURE_LOSS while none is known. If the algorithm itself fails to propose
    a point, that suggestion is a random one (warned once).

    The state is the seed and the log of asks and tells: loading replays it into a
    new optimizer, which works for every optimizer (the threaded scipy ones do not
    pickle). Runs repeat exactly for the optimizers that draw from the seeded
    parametrization, which is most; CmaFmin2 (`cma.fmin`) seeds itself from the
    clock, and a replay that differs is warned about and goes on.
    """

    #: BUDGET: the number of trials the optimizer plans for; by default the experiment's
    #: number of trials when given as `num_trials`, else FALLBACK_BUDGET.
    OPTIONS = {"OPTIMIZER": "NGOpt", "BUDGET": None}

    def __init__(self, space, *, optimizer: str = "NGOpt", budget: int | None = None, num_trials: int | None = None,
                 **kwargs):
        super().__init__(space, **kwargs)
        import nevergrad as ng

        if optimizer not in ng.optimizers.registry:
            close = difflib.get_close_matches(str(optimizer), list(ng.optimizers.registry), n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(close)}" if close else "; see nevergrad's optimizer registry"
            raise ConfigError(f"unknown nevergrad optimizer {optimizer!r}{hint}", key=OPTION_KEY)
        if budget is not None and int(budget) < 1:
            raise ValueError(f"BUDGET must be a positive number of trials, got {budget!r}")
        self.optimizer_name = optimizer
        self.budget = int(budget) if budget is not None else int(num_trials or FALLBACK_BUDGET)
        self.num_workers = max(int(self.max_concurrent), 1)
        # Replaying the log needs the same random stream, so an unseeded searcher draws its seed once.
        self._seed = self.seed if self.seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        # A one-valued choice is a constant: nevergrad's softmax over a single option is degenerate.
        self._constants = {n: d.values[0] for n, d in space.items() if isinstance(d, Choice) and len(d.values) == 1}
        self._opt = self._build()
        self._cands: dict = {}  # trial id -> the candidate asked for it, until told
        self._log: list[tuple] = []  # ("ask", trial id, value) | ("point", trial id, value) | ("tell", trial id, loss)
        self._best = math.inf
        self._worst = -math.inf
        self._ask_failed = False
        # Sequential optimizers (Cobyla, SQP, ...) run scipy in a non-daemon thread that waits
        # for the next answer, and the interpreter joins such threads before atexit handlers
        # run: without this, a process that did not call close() would never exit.
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            try:
                register(_close, weakref.ref(self))
            except RuntimeError:  # already shutting down
                pass

    def close(self) -> None:
        """Stop the optimizer's background thread, if it has one (its suggestions are random after this)."""
        if self._opt is not None:
            for thread in list(_messaging_threads(self._opt)):
                thread.stop()

    def _build(self):
        import nevergrad as ng

        params = {n: nevergrad_parameter(d) for n, d in self.space.items() if n not in self._constants}
        if not params:
            return None
        factory = ng.optimizers.registry[self.optimizer_name]
        if getattr(factory, "no_parallelization", False) and self.num_workers > 1:
            raise ConfigError(f"{self.optimizer_name} runs one trial at a time; set TUNE.MAX_CONCURRENT: 1 "
                              f"(it is {self.num_workers}) or choose another optimizer", key=OPTION_KEY)
        parametrization = ng.p.Dict(**params)
        parametrization.random_state = np.random.RandomState(self._seed)
        return factory(parametrization=parametrization, budget=self.budget, num_workers=self.num_workers)

    # -- ask
    def _suggest(self, trial_id):
        if self._opt is None:
            return self._params({})
        if len(self._cands) >= self.num_workers:
            return None  # more would break the promise made to nevergrad (and block sequential optimizers)
        cand = self._ask()
        self._cands[trial_id] = cand
        self._log.append(("ask", trial_id, copy.deepcopy(cand.value)))
        return self._params(cand.value)

    def _ask(self):
        try:
            return self._opt.ask()
        except Exception as exc:  # noqa: BLE001 - a fault inside the chosen algorithm must not end the search
            # E.g. NGOpt's MetaModel under numpy >= 2.4 (float() of a 1-element array). A random
            # point goes through suggest+ask so that the optimizer counts the ask and moves on.
            if not self._ask_failed:
                warnings.warn(f"nevergrad {self.optimizer_name} failed to propose a point "
                              f"({type(exc).__name__}: {exc}); a random point is used when that happens",
                              RuntimeWarning, stacklevel=3)
            self._ask_failed = True
            self._opt.suggest(self._opt.parametrization.sample().value)
            return self._opt.ask()

    def _params(self, value: dict) -> dict:
        params = {}
        for name, d in self.space.items():
            if name in self._constants:
                params[name] = copy.deepcopy(self._constants[name])
            elif isinstance(d, Choice):
                params[name] = copy.deepcopy(value[name])  # never the space's own list or dict
            else:
                params[name] = d.from_number(value[name])
        return params

    def _observe_point(self, trial_id, params):
        if self._opt is None:
            return
        value = {name: params.get(name) for name in self.space.domains if name not in self._constants}
        if self._ask_point(trial_id, value):
            self._log.append(("point", trial_id, copy.deepcopy(value)))

    def _ask_point(self, trial_id, value) -> bool:
        try:
            self._opt.suggest(value)
        except (ValueError, KeyError, TypeError):
            return False  # a point outside the space still runs; the optimizer just does not learn from it
        self._cands[trial_id] = self._opt.ask()  # a suggestion comes back from the next ask
        return True

    # -- tell
    def on_complete(self, trial_id, result=None, error=False):
        super().on_complete(trial_id, result, error)
        if trial_id not in self._cands:
            return
        loss = math.inf if error else self.loss(result)
        if math.isfinite(loss):
            self._best, self._worst = min(self._best, loss), max(self._worst, loss)
        elif math.isfinite(self._worst):
            loss = failure_loss(self._best, self._worst)
        else:
            loss = FIRST_FAILURE_LOSS
        self._tell(trial_id, loss)
        self._log.append(("tell", trial_id, loss))

    def _tell(self, trial_id, loss) -> None:
        from nevergrad.common.errors import TellNotAskedNotSupportedError

        try:
            self._opt.tell(self._cands.pop(trial_id), loss)
        except TellNotAskedNotSupportedError:
            pass  # a warm-start point this optimizer cannot learn from; it still ran

    # -- state
    def state_dict(self):
        return {**super().state_dict(), "seed": self._seed, "log": list(self._log),
                "best": self._best, "worst": self._worst}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.close()
        self._seed = state["seed"]
        self._opt, self._cands, self._log = self._build(), {}, list(state["log"])
        self._best, self._worst = state["best"], state["worst"]
        diverged = False
        for i, (kind, trial_id, arg) in enumerate(self._log):
            if kind == "ask":
                self._cands[trial_id] = cand = self._ask()
                if cand.value != arg and not diverged:
                    diverged = True
                    warnings.warn(f"nevergrad {self.optimizer_name} did not replay its history (ask {i} differs); "
                                  "the search goes on from where the replay got", RuntimeWarning, stacklevel=2)
            elif kind == "point":
                self._ask_point(trial_id, arg)
            elif trial_id in self._cands:
                self._tell(trial_id, arg)


@hookimpl
def register_searchers(register):
    register("nevergrad", NevergradSearcher, description="any nevergrad optimizer by name (TUNE.NEVERGRAD.OPTIMIZER)")
