"""A reidplug searcher backed by scikit-optimize's `Optimizer` (Bayesian optimisation)."""

from __future__ import annotations

import copy
import math
import pickle
import warnings

import numpy as np

from reidplug import Searcher, hookimpl
from reidplug.core.errors import ConfigError
from reidplug.core.space import Choice, RandInt

__version__ = "0.1.0"

# GBRT is left out: skopt 0.10's quantile wrapper is not recognised as a regressor by scikit-learn >= 1.6.
BASE_ESTIMATORS = ("GP", "RF", "ET")
ACQ_FUNCS = ("gp_hedge", "EI", "PI", "LCB")
ACQ_OPTIMIZERS = ("auto", "sampling", "lbfgs")


def failure_loss(best: float, worst: float) -> float:
    """The loss told for a failed trial: beyond the worst finite loss by the spread seen so far."""
    return worst + max(worst - best, 0.1 * abs(worst), 1e-6)


def is_constant(domain) -> bool:
    """A domain with one value; skopt cannot represent it, so it stays out of the model."""
    return (isinstance(domain, Choice) and len(domain.values) == 1) or (
        isinstance(domain, RandInt) and domain.high - domain.low == 1
    )


def skopt_dimension(domain):
    """The skopt dimension of one domain; a choice is searched by the index of its value."""
    from skopt.space import Categorical, Integer, Real

    if isinstance(domain, Choice):
        # Indices, not values: values may be lists or dicts, which skopt cannot hash.
        return Categorical(list(range(len(domain.values))))
    if isinstance(domain, RandInt):
        return Integer(domain.low, domain.high - 1)
    return Real(float(domain.low), float(domain.high), prior="log-uniform" if domain.log else "uniform")


class SkoptSearcher(Searcher):
    """Ask/tell over `skopt.Optimizer`; outstanding suggestions are handled by a constant liar.

    With other trials still running, the next point comes from a copy of the
    optimizer told that every running point scored the best loss so far
    ("cl_min", as `Optimizer.ask(n_points, strategy="cl_min")` does), so that
    concurrent suggestions spread out instead of repeating. Completed trials are
    told in one batch at the next suggestion, which then fits the model once.
    A failed trial is told `failure_loss` of the finite losses seen so far, or
    dropped while none is known.
    """

    #: ACQ_OPTIMIZER: "auto" lets skopt choose (L-BFGS from 5 starts for a GP); "sampling"
    #: only scores 10,000 random points, which is cheaper.
    OPTIONS = {"BASE_ESTIMATOR": "GP", "N_INITIAL_POINTS": 10, "ACQ_FUNC": "gp_hedge", "ACQ_OPTIMIZER": "auto"}

    def __init__(self, space, *, base_estimator: str = "GP", n_initial_points: int = 10, acq_func: str = "gp_hedge",
                 acq_optimizer: str = "auto", **kwargs):
        super().__init__(space, **kwargs)
        if str(base_estimator).upper() not in BASE_ESTIMATORS:
            raise ConfigError(f"expected one of {', '.join(BASE_ESTIMATORS)}, got {base_estimator!r}",
                              key="TUNE.SKOPT.BASE_ESTIMATOR")
        if acq_func not in ACQ_FUNCS:
            raise ConfigError(f"expected one of {', '.join(ACQ_FUNCS)}, got {acq_func!r}", key="TUNE.SKOPT.ACQ_FUNC")
        if acq_optimizer not in ACQ_OPTIMIZERS:
            raise ConfigError(f"expected one of {', '.join(ACQ_OPTIMIZERS)}, got {acq_optimizer!r}",
                              key="TUNE.SKOPT.ACQ_OPTIMIZER")
        if int(n_initial_points) < 0:
            raise ConfigError(f"expected a number >= 0, got {n_initial_points!r}", key="TUNE.SKOPT.N_INITIAL_POINTS")
        from skopt import Optimizer

        self._names = [name for name, d in space.items() if not is_constant(d)]
        self._rng = np.random.default_rng(self.seed)
        self._opt = None
        if self._names:
            self._opt = Optimizer(
                [skopt_dimension(space[name]) for name in self._names],
                base_estimator=str(base_estimator).upper(),
                n_initial_points=int(n_initial_points),
                acq_func=acq_func,
                acq_optimizer=acq_optimizer,
                random_state=int(self._rng.integers(2**31 - 1)),
                # skopt keeps every fitted model unless told otherwise: O(n) GPs in memory.
                model_queue_size=1,
            )
        self._xs: dict[int, list] = {}  # trial id -> its point, while the trial runs
        self._told: list[tuple[list, float]] = []  # completed, not yet told to the optimizer
        self._best = math.inf
        self._worst = -math.inf

    # -- ask
    def _suggest(self, trial_id):
        if self._opt is None:
            return self._params([])
        self._flush()
        with warnings.catch_warnings():
            # On small discrete spaces skopt may propose a point again and says so; that is fine here.
            warnings.filterwarnings("ignore", message="The objective has been evaluated")
            if self._xs:
                liar = self._opt.copy(random_state=int(self._rng.integers(2**31 - 1)))
                lie = min(self._opt.yi) if self._opt.yi else 0.0
                running = list(self._xs.values())
                liar.tell(running, [lie] * len(running))
                x = liar.ask()
            else:
                x = self._opt.ask()
        x = [v.item() if isinstance(v, np.generic) else v for v in x]
        self._xs[trial_id] = x
        return self._params(x)

    def _params(self, x: list) -> dict:
        coords = dict(zip(self._names, x))
        params = {}
        for name, d in self.space.items():
            if name not in coords:
                params[name] = copy.deepcopy(d.values[0]) if isinstance(d, Choice) else d.low
            elif isinstance(d, Choice):
                params[name] = copy.deepcopy(d.values[int(coords[name])])  # never the space's own list or dict
            else:
                params[name] = d.from_number(coords[name])
        return params

    def _observe_point(self, trial_id, params):
        if self._opt is None:
            return
        try:
            x = []
            for name in self._names:
                d = self.space[name]
                value = params[name]
                x.append(d.index(value) if isinstance(d, Choice) else value)
        except (KeyError, ValueError):
            return  # a point outside the space still runs; the model just does not learn from it
        if x in self._opt.space:
            self._xs[trial_id] = x

    # -- tell
    def on_complete(self, trial_id, result=None, error=False):
        super().on_complete(trial_id, result, error)
        x = self._xs.pop(trial_id, None)
        if x is None:
            return
        loss = math.inf if error else self.loss(result)
        if math.isfinite(loss):
            self._best, self._worst = min(self._best, loss), max(self._worst, loss)
        elif math.isfinite(self._worst):
            loss = failure_loss(self._best, self._worst)
        else:
            return
        self._told.append((x, float(loss)))

    def _flush(self) -> None:
        if self._told:
            xs, ys = zip(*self._told)
            self._told = []
            self._opt.tell(list(xs), list(ys))

    # -- state
    def state_dict(self):
        return {
            **super().state_dict(),
            "optimizer": pickle.dumps(self._opt, protocol=pickle.HIGHEST_PROTOCOL),
            "xs": dict(self._xs), "told": list(self._told), "rng": self._rng.bit_generator.state,
            "best": self._best, "worst": self._worst,
        }

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._opt = pickle.loads(state["optimizer"])
        self._xs, self._told = dict(state["xs"]), list(state["told"])
        self._rng.bit_generator.state = state["rng"]
        self._best, self._worst = state["best"], state["worst"]


@hookimpl
def register_searchers(register):
    register("skopt", SkoptSearcher, description="Bayesian optimisation with scikit-optimize (GP, RF, ET, GBRT)")
