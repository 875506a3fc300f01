"""BOHB's kernel-density model as a multi-fidelity searcher."""

from __future__ import annotations

import math

import numpy as np

from reidplug.core.hookspecs import hookimpl
from reidplug.core.searcher import Searcher
from reidplug.plugins.searchers._curves import CurveFit, adjusted, agreement

#: The model's options and hpbandster's defaults; MIN_POINTS_IN_MODEL 0 means d + 1.
KDE_OPTIONS = {
    "TOP_N_PERCENT": 15,
    "NUM_SAMPLES": 64,
    "RANDOM_FRACTION": 1.0 / 3.0,
    "BANDWIDTH_FACTOR": 3.0,
    "MIN_BANDWIDTH": 1e-3,
    "MIN_POINTS_IN_MODEL": 0,
    # "joint": one model from every budget's results (each ranked within its budget, the
    # larger budgets weighing more); "hpbandster": the largest budget with enough points.
    "MODEL": "joint",
    # With the joint model: rank a budget's results by the loss their learning curve is heading
    # for at the largest budget, and weigh each budget by how well it agrees with the largest.
    "EXTRAPOLATE": True,
    "AGREEMENT": True,
    # With the joint model: the minimum bandwidth of a number is 1 / min(100, 1 + n), n the
    # model's (effective) number of points, instead of MIN_BANDWIDTH alone.
    "ADAPTIVE_BANDWIDTH": True,
    # With the joint model: a budget's points weigh sqrt(n_top / n) more, n its number of points,
    # so that the many results at small budgets do not outvote the few at the largest.
    "BALANCE_BUDGETS": True,
}

_REFIT_ALWAYS = 200  # largest-budget results below which every new one refits the curves
_REFIT_GROWTH = 1.05  # above it, they refit once the results have grown by this factor
_TINY = 1e-32  # densities are floored here before the ratio, as in hpbandster
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _stale(fitted_top: int, fitted_rows: int, top: int, n_top: int) -> bool:
    """Whether a curve fit on `fitted_rows` results at `fitted_top` is out of date.

    A fit learns only from trials that reached the largest budget, and those reached the
    smaller budget before it, so only the largest budget's count can change it. Past
    _REFIT_ALWAYS such trials, a few more barely move a three-coefficient fit, and refitting
    on each would make a rung's decision cost milliseconds at 10,000 trials.
    """
    if fitted_top != top:
        return True
    return n_top != fitted_rows and (n_top < _REFIT_ALWAYS or n_top >= fitted_rows * _REFIT_GROWTH)


class KDE:
    """A product-kernel density estimate on the unit cube.

    Continuous dimensions (numbers, integers) use a Gaussian kernel; categorical ones
    (stored as indices) use the Aitchison-Aitken kernel. Bandwidths follow the normal
    reference rule 1.06 * std * n**(-1 / (4 + d)) (statsmodels' 'normal_reference').
    """

    def __init__(self, data: np.ndarray, levels: np.ndarray, min_bandwidth: float, weights: np.ndarray | None = None,
                 adaptive: bool = False):
        self.data = np.asarray(data, dtype=float)
        n, d = self.data.shape
        self.levels = levels
        if weights is None:
            self.weights = np.full(n, 1.0 / n)
            std = self.data.std(axis=0)
        else:
            self.weights = np.asarray(weights, dtype=float) / np.sum(weights)
            mean = self.weights @ self.data
            std = np.sqrt(self.weights @ (self.data - mean) ** 2)
            n = 1.0 / float(np.sum(self.weights**2))  # the effective sample size
        bw = 1.06 * std * n ** (-1.0 / (4 + d))
        bw = np.maximum(bw, min_bandwidth)
        if adaptive:
            # hyperopt's and Optuna's floor, 1 / min(100, 1 + n) of the range: wide while the
            # model rests on few points, so that it keeps exploring instead of collapsing early.
            bw = np.where(levels > 0, bw, np.maximum(bw, 1.0 / min(100.0, 1.0 + n)))
        cat = levels > 0
        # Past (c - 1) / c the kernel would favour the other values over the observed one;
        # statsmodels lets that happen (and then returns negative densities), we stop at uniform.
        cap = np.where(cat, (np.maximum(levels, 1) - 1) / np.maximum(levels, 1), np.inf)
        self.bw = np.minimum(bw, cap)
        self._cont = np.flatnonzero(~cat)
        self._cat = np.flatnonzero(cat & (levels > 1))  # a one-value choice carries no information

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """log density at each row of `x` (m, d)."""
        x = np.atleast_2d(x)
        total = np.zeros((x.shape[0], self.data.shape[0]))
        for j in self._cont:
            h = self.bw[j]
            z = (x[:, j, None] - self.data[None, :, j]) / h
            total += -0.5 * z * z - _LOG_SQRT_2PI - math.log(h)
        for j in self._cat:
            h, c = self.bw[j], self.levels[j]
            same = x[:, j, None] == self.data[None, :, j]
            total += np.where(same, math.log(max(1.0 - h, _TINY)), math.log(max(h / (c - 1), _TINY)))
        total += np.log(self.weights)[None, :]
        peak = total.max(axis=1, keepdims=True)
        return peak[:, 0] + np.log(np.exp(total - peak).sum(axis=1))


class BOHBSearcher(Searcher):
    """Tree-Parzen-like search with a good and a bad KDE fitted per budget (Falkner et al. 2018).

    Learns from every result whose step is a budget (all steps unless a scheduler calls
    `set_budgets`); samples from the model of the largest budget with enough points.
    """

    # TUNE.BOHB is also the bohb scheduler's section when both are chosen: the searcher
    # accepts that scheduler's Hyperband keys and leaves them to it.
    OPTIONS = {**KDE_OPTIONS, "MIN_BUDGET": 1, "MAX_BUDGET": 0, "ETA": 3}

    def __init__(self, space, *, top_n_percent=15, num_samples=64, random_fraction=1.0 / 3.0, bandwidth_factor=3.0,
                 min_bandwidth=1e-3, min_points_in_model=0, model="joint", extrapolate: bool = True,
                 agreement: bool = True, adaptive_bandwidth: bool = True, balance_budgets: bool = True,
                 min_budget=None, max_budget=None, eta=None, **kwargs):
        super().__init__(space, **kwargs)
        if model not in ("joint", "hpbandster"):
            raise ValueError(f"MODEL must be 'joint' or 'hpbandster', got {model!r}")
        self.joint = model == "joint"
        # hpbandster's model is hpbandster's: neither learns from the curves.
        self.extrapolate = bool(extrapolate) and self.joint
        self.use_agreement = bool(agreement) and self.joint
        self.adaptive_bandwidth = bool(adaptive_bandwidth) and self.joint
        self.balance_budgets = bool(balance_budgets) and self.joint
        if not 0 < top_n_percent < 100:
            raise ValueError(f"TOP_N_PERCENT must be between 0 and 100, got {top_n_percent}")
        if num_samples < 1:
            raise ValueError(f"NUM_SAMPLES must be at least 1, got {num_samples}")
        if not 0 <= random_fraction <= 1:
            raise ValueError(f"RANDOM_FRACTION must be between 0 and 1, got {random_fraction}")
        if bandwidth_factor <= 0 or min_bandwidth <= 0:
            raise ValueError("BANDWIDTH_FACTOR and MIN_BANDWIDTH must be positive")
        self.d = len(space)
        self.top_n_percent = int(top_n_percent)
        self.num_samples = int(num_samples)
        self.random_fraction = float(random_fraction)
        self.bandwidth_factor = float(bandwidth_factor)
        self.min_bandwidth = float(min_bandwidth)
        # Fewer than d + 1 points cannot fit a d-dimensional KDE; hpbandster raises it to d + 1 too.
        self.min_points = max(int(min_points_in_model or 0), self.d + 1)
        self.domains = list(space.domains.values())
        self.levels = np.array([len(dom.values) if dom.categorical else 0 for dom in self.domains], dtype=int)
        self.budgets: set[int] | None = None
        self._X: dict[int, np.ndarray] = {}  # budget -> vectors (rows beyond _n unused)
        self._y: dict[int, np.ndarray] = {}  # budget -> losses
        self._ids: dict[int, np.ndarray] = {}  # budget -> trial ids
        self._rise: dict[int, np.ndarray] = {}  # budget -> loss gained since the trial's previous budget (nan: none)
        self._last: dict[int, tuple[int, float, float]] = {}  # live trial -> (budget, loss, rise) of its latest result
        self._fits: dict[int, tuple[int, int, CurveFit | None]] = {}  # budget -> (largest budget, its rows fitted on, fit)
        self._n: dict[int, int] = {}
        self.model_budgets: set[int] = set()  # budgets with enough points for a model
        self._models: dict[int, tuple[KDE, KDE, int]] = {}  # budget -> (good, bad, points when fitted)
        self._rng = np.random.default_rng(self.seed)
        self.picks = {"model": 0, "random": 0}
        self.last_pick: str | None = None

    def set_budgets(self, budgets) -> None:
        """Model only results at these steps (the scheduler's rungs)."""
        self.budgets = {int(b) for b in budgets}

    # ------------------------------------------------------------------ encoding

    def encode(self, params: dict) -> np.ndarray:
        """The model's vector: unit-cube coordinates, category indices for choices."""
        return np.array([dom.index(params[name]) if dom.categorical else dom.to_unit(params[name])
                         for name, dom in zip(self.space.domains, self.domains)], dtype=float)

    def decode(self, vector) -> dict:
        return {name: (dom.values[int(round(u))] if dom.categorical else dom.from_unit(u))
                for (name, dom), u in zip(self.space.domains.items(), vector)}

    # ------------------------------------------------------------------ learning

    def on_result(self, trial_id, result):
        step = int(result.get("step", 0))
        if self.budgets is not None and step not in self.budgets:
            return
        self._observe(trial_id, step, self.loss(result))

    def on_complete(self, trial_id, result=None, error=False):
        if error:
            # A crash counts as a bad configuration (+inf) at the budget it was running towards.
            done = int((result or {}).get("step", 0))
            later = sorted(b for b in self.budgets if b > done) if self.budgets is not None else [done + 1]
            if later:
                self._observe(trial_id, later[0], math.inf)
        self._last.pop(trial_id, None)
        super().on_complete(trial_id, result, error)

    def _observe(self, trial_id: int, budget: int, loss: float) -> None:
        params = self.live.get(trial_id)
        if params is None:
            return
        # Once a model exists for a larger budget, smaller budgets are no longer modelled (hpbandster).
        if not self.joint and self.model_budgets and max(self.model_budgets) > budget:
            return
        n = self._n.get(budget, 0)
        if budget not in self._X:
            self._X[budget] = np.empty((16, self.d))
            self._y[budget] = np.empty(16)
            self._ids[budget] = np.empty(16, dtype=np.int64)
            self._rise[budget] = np.empty(16)
        elif n == len(self._y[budget]):
            self._grow(budget)
        loss = loss if math.isfinite(loss) else math.inf
        last = self._last.get(trial_id)
        self._X[budget][n] = self.encode(params)
        self._y[budget][n] = loss
        self._ids[budget][n] = trial_id
        self._rise[budget][n] = last[1] - loss if last is not None and last[0] < budget and math.isfinite(loss) \
            and math.isfinite(last[1]) else math.nan
        self._last[trial_id] = (budget, loss, float(self._rise[budget][n]))
        self._n[budget] = n + 1
        n_good, n_bad = self._split(n + 1)
        if n + 1 >= self.min_points and n_good > self.d and n_bad > self.d:
            self.model_budgets.add(budget)

    def _grow(self, budget: int, by: int | None = None) -> None:
        by = by or len(self._y[budget])
        for table in (self._X, self._y, self._ids, self._rise):
            grown = np.empty((by,) + table[budget].shape[1:], dtype=table[budget].dtype)
            table[budget] = np.concatenate([table[budget], grown])

    # ------------------------------------------------------------------ the curves

    def _top(self) -> int | None:
        """The largest budget observed: the one the others are judged against."""
        return max(self._n) if self._n else None

    def _top_losses(self, top: int, n: int | None = None) -> dict:
        n = self._n[top] if n is None else n
        return dict(zip(self._ids[top][:n].tolist(), self._y[top][:n].tolist()))

    def curve_fit(self, budget: int) -> CurveFit | None:
        """The regression of the largest budget's loss on `budget`'s loss and rise (None: not enough data)."""
        top = self._top()
        if not self.extrapolate or top is None or budget >= top or budget not in self._n:
            return None
        n_top = self._n[top]
        cached = self._fits.get(budget)
        if cached is None or _stale(cached[0], cached[1], top, n_top):
            cached = self._fits[budget] = (top, n_top, self._fit(budget, top, n_top))
        return cached[2]

    def _fit(self, budget: int, top: int, n_top: int) -> CurveFit | None:
        n = self._n[budget]
        return CurveFit.fit(self._ids[budget][:n].tolist(), self._y[budget][:n], self._rise[budget][:n],
                            self._top_losses(top, n_top))

    def effective_losses(self, budget: int) -> np.ndarray:
        """`budget`'s losses, each replaced by the predicted loss at the largest budget where the curves allow."""
        n = self._n[budget]
        return adjusted(self.curve_fit(budget), self._y[budget][:n], self._rise[budget][:n])

    def predicted_loss(self, trial_id: int, budget: int) -> float | None:
        """The loss at the largest budget that `trial_id`'s result at `budget` points to (None: no prediction).

        The schedulers rank a rung by it, so that a rung and the model agree on who is ahead.
        """
        last = self._last.get(trial_id)
        if last is None or last[0] != budget:
            return None
        fit = self.curve_fit(budget)
        _, loss, rise = last
        if fit is None or not (math.isfinite(rise) and math.isfinite(loss)):
            return None
        return float(fit.predict(loss, rise)[0])

    def _split(self, n: int) -> tuple[int, int]:
        """Rows in the good and in the bad set for n points (hpbandster's formula, sets disjoint)."""
        n_good = max(self.min_points, (self.top_n_percent * n) // 100)
        n_bad = max(self.min_points, ((100 - self.top_n_percent) * n) // 100)
        return min(n_good, n), max(min(n_bad, n - n_good), 0)

    def joint_model(self) -> tuple[KDE, KDE] | None:
        """One (good, bad) pair from every budget's points.

        Each budget's points are ranked among themselves; as many of them are good as
        hpbandster's split of all the points gives, shared out by the budget's size, so
        early on (few points) the top half is good, later the top TOP_N_PERCENT. A budget's
        points weigh as its rank among the budgets (1 for the smallest), since the
        larger budgets' rankings are the more faithful ones, times (with AGREEMENT) the
        budget's rank agreement with the largest budget, clipped at 0, times (with
        BALANCE_BUDGETS) sqrt(n_top / n). With EXTRAPOLATE, a budget's points are ranked
        by the loss their curves predict at the largest budget.
        """
        budgets = sorted(b for b, n in self._n.items() if n >= 2)
        key = tuple((b, self._n[b]) for b in budgets)
        cached = self._models.get("joint")
        if cached is not None and cached[2] == key:
            return cached[0], cached[1]
        losses = {b: self.effective_losses(b) for b in budgets}
        factor = self.agreements(losses) if self.use_agreement else {}
        budgets = [b for b in budgets if factor.get(b, 1.0) > 0]
        total = sum(self._n[b] for b in budgets)
        if total < 2 * self.min_points:
            return None
        n_good_total, _ = self._split(total)
        good_x, good_w, bad_x, bad_w = [], [], [], []
        for rank, b in enumerate(budgets, start=1):
            n = self._n[b]
            X, y = self._X[b][:n], losses[b]
            order = np.argsort(y, kind="stable")
            k = min(max(1, math.ceil(n * n_good_total / total)), n - 1)
            weight = self._point_weight(rank, n, factor.get(b, 1.0))
            good_x.append(X[order[:k]])
            bad_x.append(X[order[k:]])
            good_w += [weight] * k
            bad_w += [weight] * (n - k)
        good = KDE(np.concatenate(good_x), self.levels, self.min_bandwidth, np.array(good_w), self.adaptive_bandwidth)
        bad = KDE(np.concatenate(bad_x), self.levels, self.min_bandwidth, np.array(bad_w), self.adaptive_bandwidth)
        self._models["joint"] = (good, bad, key)
        return good, bad

    def _point_weight(self, rank: int, n: int, agreement: float) -> float:
        if not self.balance_budgets:
            return rank * agreement
        # A budget's total weight then grows as sqrt(n * n_top), not n: with eta 3 the smallest
        # budget holds most of the points, and its ranking (fast learners ahead) would set the
        # model's course; weighing per budget instead (n_top / n) leaves too few points to trust.
        return rank * agreement * math.sqrt(self._n[self._top()] / n)

    def agreements(self, losses: dict) -> dict:
        """Each smaller budget's weight factor: max(0, Kendall's tau with the largest budget); 1 while unknown."""
        top = self._top()
        if top is None:
            return {}
        top_loss = self._top_losses(top)
        out = {}
        for b, y in losses.items():
            if b < top:
                tau = agreement(self._ids[b][:self._n[b]].tolist(), y, top_loss)
                out[b] = 1.0 if tau is None else max(0.0, tau)
        return out

    def model(self, budget: int | None = None) -> tuple[KDE, KDE] | None:
        """The (good, bad) densities at `budget` (default: the largest budget with a model; the joint model)."""
        if budget is None and self.joint:
            return self.joint_model()
        if budget is None:
            if not self.model_budgets:
                return None
            budget = max(self.model_budgets)
        n = self._n[budget]
        cached = self._models.get(budget)
        if cached is None or cached[2] != n:
            X, y = self._X[budget][:n], self._y[budget][:n]
            order = np.argsort(y, kind="stable")
            n_good, n_bad = self._split(n)
            good = KDE(X[order[:n_good]], self.levels, self.min_bandwidth)
            bad = KDE(X[order[n_good:n_good + n_bad]], self.levels, self.min_bandwidth)
            cached = self._models[budget] = (good, bad, n)
        return cached[0], cached[1]

    # ------------------------------------------------------------------ suggesting

    def _suggest(self, trial_id):
        pair = self.model()
        if pair is None or self._rng.random() < self.random_fraction:
            self.picks["random"] += 1
            self.last_pick = "random"
            return self.space.sample(self._rng)
        good, bad = pair
        vector = self._best_candidate(good, bad)
        self.picks["model"] += 1
        self.last_pick = "model"
        return self.decode(vector)

    def _best_candidate(self, good: KDE, bad: KDE) -> np.ndarray:
        """Draw candidates around random good points; keep the one with the lowest bad/good density ratio."""
        from scipy.special import ndtr, ndtri

        rng, m = self._rng, self.num_samples
        if self.joint:
            base = good.data[rng.choice(len(good.data), size=m, p=good.weights)]
        else:
            base = good.data[rng.integers(len(good.data), size=m)]
        cand = base.copy()
        cont = self.levels == 0
        if cont.any():
            # A normal around each good point truncated to [0, 1], drawn by inverting its CDF
            # (the centre lies inside the interval, so this stays accurate).
            mu = base[:, cont]
            sd = good.bw[cont] * self.bandwidth_factor
            lo, hi = ndtr(-mu / sd), ndtr((1 - mu) / sd)
            u = lo + rng.random(mu.shape) * (hi - lo)
            cand[:, cont] = np.clip(mu + sd * ndtri(u), 0.0, 1.0)
        for j in np.flatnonzero(~cont):
            resample = rng.random(m) >= 1.0 - good.bw[j]
            cand[resample, j] = rng.integers(self.levels[j], size=int(resample.sum()))
        log_l = np.maximum(good.logpdf(cand), math.log(_TINY))
        log_g = np.maximum(bad.logpdf(cand), math.log(_TINY))
        return cand[int(np.argmin(log_g - log_l))]

    # ------------------------------------------------------------------ state

    def state_dict(self):
        return {
            **super().state_dict(),
            "data": {b: (self._X[b][:n].copy(), self._y[b][:n].copy()) for b, n in self._n.items()},
            "curves": {b: (self._ids[b][:n].copy(), self._rise[b][:n].copy()) for b, n in self._n.items()},
            "last": {tid: list(last) for tid, last in self._last.items()},
            "model_budgets": set(self.model_budgets),
            "budgets": None if self.budgets is None else set(self.budgets),
            "rng": self._rng.bit_generator.state,
            "picks": dict(self.picks),
            "fits": {b: (top, n_top) for b, (top, n_top, _) in self._fits.items()},
        }

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._X = {b: np.array(X, dtype=float).reshape(-1, self.d) for b, (X, _) in state["data"].items()}
        self._y = {b: np.array(y, dtype=float) for b, (_, y) in state["data"].items()}
        self._n = {b: len(y) for b, y in self._y.items()}
        # A state saved before the curves were kept: no trial ids, no rises (nothing to extrapolate from).
        curves = state.get("curves", {})
        self._ids = {b: np.array(curves[b][0] if b in curves else np.full(n, -1), dtype=np.int64)
                     for b, n in self._n.items()}
        self._rise = {b: np.array(curves[b][1] if b in curves else np.full(n, math.nan), dtype=float)
                      for b, n in self._n.items()}
        self._last = {int(tid): (int(b), float(loss), float(rise)) for tid, (b, loss, rise) in state.get("last", {}).items()}
        for b in self._X:  # keep room to grow
            self._grow(b, 16)
        # Refitted on the rows they had, so that a resumed search ranks as the uninterrupted one would.
        self._fits = {int(b): (int(top), int(n_top), self._fit(int(b), int(top), int(n_top)))
                      for b, (top, n_top) in state.get("fits", {}).items()
                      if b in self._n and top in self._n and n_top <= self._n[top]}
        self.model_budgets = set(state["model_budgets"])
        self.budgets = state["budgets"]
        self._rng.bit_generator.state = state["rng"]
        self.picks = dict(state["picks"])
        self._models = {}


@hookimpl
def register_searchers(register):
    register("bohb", BOHBSearcher, description="BOHB's kernel-density model (learns from every budget)")
