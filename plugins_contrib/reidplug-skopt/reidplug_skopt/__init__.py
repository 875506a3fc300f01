"""A reidplug searcher backed by scikit-optimize's `Optimizer` (Bayesian optimisation)."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np

from reidplug import Searcher, hookimpl
from reidplug.core.errors import ConfigError, UserError
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
        self._names = [name for name, d in space.items() if not is_constant(d)]
        self._rng = np.random.default_rng(self.seed)
        self._args = {"base_estimator": str(base_estimator).upper(), "n_initial_points": int(n_initial_points),
                      "acq_func": acq_func, "acq_optimizer": acq_optimizer}
        self._opt = None
        self._last_fit = None  # what the optimizer held before its latest tell; see _rebuild
        if self._names:
            self._random_state = int(self._rng.integers(2**31 - 1))
            self._opt = self._new_optimizer()
        self._xs: dict[int, list] = {}  # trial id -> its point, while the trial runs
        self._told: list[tuple[list, float]] = []  # completed, not yet told to the optimizer
        self._best = math.inf
        self._worst = -math.inf

    def _new_optimizer(self):
        from skopt import Optimizer

        return Optimizer(
            [skopt_dimension(self.space[name]) for name in self._names], **self._args,
            random_state=self._random_state,
            # skopt keeps every fitted model unless told otherwise: O(n) GPs in memory.
            model_queue_size=1,
        )

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
            self._last_fit = {
                "n": len(self._opt.Xi), "rng": self._opt.rng.get_state(),
                "gains": np.copy(self._opt.gains_) if hasattr(self._opt, "gains_") else None,
                "next_xs": [np.copy(x) for x in self._opt.next_xs_] if hasattr(self._opt, "next_xs_") else None,
            }
            self._opt.tell(list(xs), list(ys))

    # -- state
    # No pickle of the optimizer: a state is data from the experiment folder, and unpickling
    # it could run anything. The optimizer is rebuilt from its arguments and its told points.
    def state_dict(self):
        opt = None
        if self._opt is not None:
            opt = {"args": dict(self._args), "random_state": self._random_state, "Xi": [list(x) for x in self._opt.Xi],
                   "yi": [float(y) for y in self._opt.yi], "rng": self._opt.rng.get_state(), "last_fit": self._last_fit}
        return {
            **super().state_dict(),
            "optimizer": opt,
            "xs": dict(self._xs), "told": list(self._told), "rng": self._rng.bit_generator.state,
            "best": self._best, "worst": self._worst,
        }

    def load_state_dict(self, state):
        opt = state.get("optimizer")
        if isinstance(opt, (bytes, bytearray)):
            raise UserError("the skopt searcher's state holds a pickled optimizer (reidplug-skopt 0.1.0 wrote "
                            "those); it is not loaded, since unpickling could run code: start a new experiment")
        try:
            super().load_state_dict(state)
            if (opt is None) != (self._opt is None):
                raise ValueError("it does not fit this search space")
            if opt is not None:
                self._rebuild(opt)
            self._xs = {int(k): list(v) for k, v in state["xs"].items()}
            self._told = [(list(x), float(y)) for x, y in state["told"]]
            self._rng.bit_generator.state = state["rng"]
            self._best, self._worst = float(state["best"]), float(state["worst"])
        except UserError:
            raise
        except Exception as exc:  # data from the folder that does not make an optimizer
            raise UserError(f"the skopt searcher's state cannot be loaded ({type(exc).__name__}: {exc})") from None

    def _rebuild(self, opt: dict) -> None:
        """The optimizer exactly as it was: the same construction, its points told again.

        A fit draws from the optimizer's RNG, and gp_hedge's gains add up over
        every fit, so telling all points at once would not give the same next
        point. Instead the points before the latest tell go in unfitted, the
        gains, candidates and RNG of that moment are put back, and the latest
        tell is repeated; the RNG is then set to where asks since had left it.
        """
        if opt["args"] != self._args:
            raise ValueError(f"written with TUNE.SKOPT {opt['args']}, not {self._args}")
        self._random_state = int(opt["random_state"])
        self._opt = self._new_optimizer()
        xs, ys = [list(x) for x in opt["Xi"]], [float(y) for y in opt["yi"]]
        if len(xs) != len(ys):
            raise ValueError("Xi and yi differ in length")
        last = opt["last_fit"]
        n = int(last["n"]) if last is not None else len(xs)
        if not 0 <= n <= len(xs):
            raise ValueError("last_fit.n is out of range")
        if n:
            self._opt.tell(xs[:n], ys[:n], fit=False)
        if last is not None:
            if last["gains"] is not None:
                gains = np.asarray(last["gains"], dtype=float)
                if gains.shape != self._opt.gains_.shape:
                    raise ValueError("gp_hedge gains of the wrong shape")
                self._opt.gains_ = gains.copy()
            if last["next_xs"] is not None:
                self._opt.next_xs_ = [np.asarray(x, dtype=float).reshape(len(self._names)) for x in last["next_xs"]]
            self._opt.rng.set_state(last["rng"])
            if n < len(xs):
                self._opt.tell(xs[n:], ys[n:])
        self._opt.rng.set_state(opt["rng"])
        self._last_fit = last


@hookimpl
def register_searchers(register):
    register("skopt", SkoptSearcher, description="Bayesian optimisation with scikit-optimize (GP, RF, ET, GBRT)")
