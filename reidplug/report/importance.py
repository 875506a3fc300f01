"""Parameter importance: a functional ANOVA of main effects over a random forest fitted to the trials.

A random forest (scikit-learn) learns metric = f(params) with each parameter
mapped to [0, 1] as the searchers see it (log scale for log domains, a
category's position for a choice). A parameter's importance is the share of
the variance of f over the whole space that its main effect explains:

    f_i(x_i) = E[f(x) | x_i]   (the other parameters drawn uniformly from the space)
    importance_i = Var(f_i) / Var(f)

as fANOVA does (Hutter et al., 2014), here estimated by Monte Carlo. The
shares do not add up to 1: what is left is explained by interactions.
"""

from __future__ import annotations

import numpy as np

from reidplug.report.experiment_data import ExperimentData

METHOD = "fANOVA main effects (variance share) over a random forest"
MIN_TRIALS = 5


def importance(data: ExperimentData, *, samples: int = 512, grid: int = 24, seed: int = 0) -> dict:
    """Importance of each search-space parameter for TUNE.METRIC, or a note saying why there is none."""
    space = data.space()
    if space is None or not len(space):
        return {"method": METHOD, "note": "no search space to rank", "params": [], "importance": []}
    names = list(space.domains)
    last = data.last_results()
    x_rows, y = [], []
    for t in data.trials:
        value = data.value(last.get(t["id"]))
        if value is None or any(n not in t["params"] for n in names):
            continue
        try:
            x_rows.append([space.domains[n].to_unit(t["params"][n]) for n in names])
        except (ValueError, TypeError):
            continue  # a value outside the space (changed config)
        y.append(value)
    if len(y) < MIN_TRIALS:
        return {"method": METHOD, "params": names, "importance": [],
                "note": f"needs at least {MIN_TRIALS} trials with a result, has {len(y)}"}
    return forest_importance(np.array(x_rows, dtype=float), np.array(y, dtype=float), names,
                             [space.domains[n] for n in names], samples=samples, grid=grid, seed=seed)


def forest_importance(x: np.ndarray, y: np.ndarray, names: list[str], domains: list, *, samples: int = 512,
                      grid: int = 24, seed: int = 0) -> dict:
    """Main-effect variance shares of a forest fitted to x (unit cube) -> y."""
    from sklearn.ensemble import RandomForestRegressor

    if float(np.var(y)) == 0.0:
        return {"method": METHOD, "params": names, "importance": [0.0] * len(names), "n_trials": int(len(y)),
                "note": "every trial has the same value: nothing to explain"}
    forest = RandomForestRegressor(n_estimators=64, min_samples_leaf=1, max_features=1.0, random_state=seed,
                                   n_jobs=1)
    forest.fit(x, y)
    rng = np.random.default_rng(seed)
    base = np.column_stack([_draw(d, samples, rng) for d in domains])
    total = float(np.var(forest.predict(base)))
    shares = []
    for i, domain in enumerate(domains):
        points = _grid(domain, grid)
        effects = []
        for u in points:
            probe = base.copy()
            probe[:, i] = u
            effects.append(float(forest.predict(probe).mean()))
        # The grid is uniform over the unit interval, i.e. over the space as the searchers sample it.
        shares.append(float(np.var(effects)) / total if total > 0 else 0.0)
    return {"method": METHOD, "params": names, "importance": shares, "n_trials": int(len(y)),
            "impurity": [float(v) for v in forest.feature_importances_], "note": ""}


def _draw(domain, n: int, rng: np.random.Generator) -> np.ndarray:
    if domain.categorical:
        return (rng.integers(len(domain.values), size=n) + 0.5) / len(domain.values)
    if domain.integer:
        width = domain.high - domain.low
        return (rng.integers(width, size=n) + 0.5) / width
    return rng.random(n)


def _grid(domain, n: int) -> list[float]:
    if domain.categorical:
        k = len(domain.values)
        return [(i + 0.5) / k for i in range(k)]
    if domain.integer and domain.high - domain.low <= n:
        width = domain.high - domain.low
        return [(i + 0.5) / width for i in range(width)]
    return [float(u) for u in (np.arange(n) + 0.5) / n]
