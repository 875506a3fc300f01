"""What the learning curves of a multi-fidelity search say about the largest budget.

Two estimates, both fitted on the trials that reached the largest budget, so they only
ever learn from the search's own data:

- `CurveFit`: the loss at the largest budget predicted from a trial's loss at a smaller
  budget and how much it improved since the budget before (a ridge regression per
  budget, in the spirit of Baker et al. 2017, "Accelerating neural architecture search
  using performance prediction"). Curves that cross (fast learners ahead early, others
  ahead at the end) are then ranked by where they are heading, not where they are.
- `agreement`: Kendall's tau between a budget's ranking and the largest budget's, over
  the trials seen at both (MFES-HB, Li et al. 2021, weighs each fidelity by its ranking
  agreement with the highest); budgets that rank the other way get no say.
"""

from __future__ import annotations

import math

import numpy as np

MIN_ROWS = 8  # trials seen at both budgets before a fit is trusted
MIN_AGREEMENT_ROWS = 6
_RIDGE = 1e-3  # per row, on standardised features


class CurveFit:
    """loss_top ~ b0 + b1 * level + b2 * rise, standardised features, a light ridge penalty."""

    def __init__(self, level: np.ndarray, rise: np.ndarray, target: np.ndarray):
        X = np.column_stack([level, rise])
        self.mean = X.mean(axis=0)
        self.scale = X.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        Z = np.column_stack([np.ones(len(X)), (X - self.mean) / self.scale])
        penalty = _RIDGE * len(X) * np.diag([0.0, 1.0, 1.0])
        inverse = np.linalg.inv(Z.T @ Z + penalty)
        self.beta = inverse @ Z.T @ target
        # Leave-one-out predictions (the hat matrix's shortcut), to judge the fit on trials it did not see.
        leverage = np.einsum("ij,jk,ik->i", Z, inverse, Z)
        residual = target - Z @ self.beta
        self.held_out = target - residual / np.maximum(1.0 - leverage, 1e-9)

    def predict(self, level, rise) -> np.ndarray:
        Z = (np.column_stack([np.atleast_1d(level), np.atleast_1d(rise)]) - self.mean) / self.scale
        return self.beta[0] + Z @ self.beta[1:]

    @classmethod
    def fit(cls, ids, level, rise, top_loss: dict) -> CurveFit | None:
        """A fit from one budget's rows (`ids`, `level`, `rise`) and the largest budget's losses by trial id."""
        rows = [i for i, tid in enumerate(ids)
                if tid in top_loss and math.isfinite(top_loss[tid]) and math.isfinite(level[i]) and math.isfinite(rise[i])]
        if len(rows) < MIN_ROWS:
            return None
        target = np.array([top_loss[ids[i]] for i in rows])
        fit = cls(level[rows], rise[rows], target)
        # Kept only where it ranks the trials it did not see better than their own losses do:
        # on curves that do not cross, the rise is noise and the raw ranking is the better one.
        if _tau(fit.held_out, target) <= _tau(level[rows], target):
            return None
        return fit


def adjusted(fit: CurveFit | None, level: np.ndarray, rise: np.ndarray) -> np.ndarray:
    """The predicted loss where a row has a rise and a fit exists, its own loss elsewhere."""
    if fit is None:
        return level
    out = level.copy()
    ok = np.isfinite(level) & np.isfinite(rise)
    if ok.any():
        out[ok] = fit.predict(level[ok], rise[ok])
    return out


def _tau(a, b) -> float:
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return float(tau) if tau == tau else 0.0  # constant rankings: nan, no information


def agreement(ids, losses, top_loss: dict) -> float | None:
    """Kendall's tau between `losses` and the largest budget's over the trials in both (None: too few)."""
    pairs = [(loss, top_loss[tid]) for tid, loss in zip(ids, losses)
             if tid in top_loss and math.isfinite(loss) and math.isfinite(top_loss[tid])]
    if len(pairs) < MIN_AGREEMENT_ROWS:
        return None
    a, b = zip(*pairs)
    return _tau(a, b)
