"""Population based bandits (PB2): PBT whose explore step is a time-varying GP-UCB bandit."""

from __future__ import annotations

import math

import numpy as np

from reidplug.core.hookspecs import hookimpl
from reidplug.core.trial import Decision, Trial
from reidplug.plugins.schedulers.pbt import PBTScheduler

_JITTER = 1e-8


def tv_kernel(A: np.ndarray, B: np.ndarray, variance: float, lengthscale: float, epsilon: float) -> np.ndarray:
    """Parker-Holder et al.'s time-varying squared exponential: column 0 is time, the rest are features.

    k = variance * exp(-|x - x'|^2 / lengthscale) * (1 - epsilon) ** (|t - t'| / 2)
    """
    dt = np.abs(A[:, None, 0] - B[None, :, 0])
    d2 = ((A[:, None, 1:] - B[None, :, 1:]) ** 2).sum(axis=-1)
    return variance * np.exp(-d2 / lengthscale) * (1.0 - epsilon) ** (0.5 * dt)


class TimeVaryingGP:
    """A GP with the time-varying kernel and a noise term; hyperparameters by maximum marginal likelihood.

    The lengthscale, epsilon and the noise-to-signal ratio are chosen on a grid, the
    signal variance in closed form for each: deterministic (a resumed search chooses
    as the original did) and a few milliseconds for the few hundred points PB2 keeps.
    """

    LENGTHSCALES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    EPSILONS = (0.0, 0.03, 0.1, 0.3)
    NOISE_RATIOS = (1e-3, 1e-2, 0.1, 1.0)

    def __init__(self, X: np.ndarray, y: np.ndarray, theta=None):
        self.X, self.y = X, y
        self.theta = tuple(theta) if theta is not None else self._fit()
        self._factor()

    def _fit(self) -> tuple[float, float, float, float]:
        n = len(self.y)
        dt = np.abs(self.X[:, None, 0] - self.X[None, :, 0])
        d2 = ((self.X[:, None, 1:] - self.X[None, :, 1:]) ** 2).sum(axis=-1)
        best, theta = math.inf, None
        for ls in self.LENGTHSCALES:
            E = np.exp(-d2 / ls)
            for eps in self.EPSILONS:
                # One eigendecomposition serves every noise ratio: K = var * Q (diag(w) + g) Q'.
                w, Q = np.linalg.eigh(E * (1.0 - eps) ** (0.5 * dt))
                w = np.maximum(w, 0.0)
                proj = (Q.T @ self.y) ** 2
                for g in self.NOISE_RATIOS:
                    lam = w + g + _JITTER
                    var = max(float((proj / lam).sum()) / n, 1e-12)
                    # -log likelihood with the variance at its optimum, up to constants
                    nll = 0.5 * n * math.log(var) + 0.5 * float(np.log(lam).sum())
                    if nll < best:
                        best, theta = nll, (var, ls, eps, g * var)
        return theta if theta is not None else (1.0, 1.0, 0.1, 1.0)

    def _factor(self) -> None:
        var, ls, eps, noise = self.theta
        self._kargs = (var, ls, eps)
        K = tv_kernel(self.X, self.X, *self._kargs) + (noise + _JITTER * var) * np.eye(len(self.X))
        self._L = np.linalg.cholesky(K)
        from scipy.linalg import solve_triangular  # here: scipy costs seconds at every plugin load

        self._alpha = solve_triangular(self._L.T, solve_triangular(self._L, self.y, lower=True), lower=False)

    def predict(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent function at the rows of Z."""
        Ks = tv_kernel(Z, self.X, *self._kargs)
        mean = Ks @ self._alpha
        from scipy.linalg import solve_triangular

        v = solve_triangular(self._L, Ks.T, lower=True)
        var = np.maximum(self._kargs[0] - (v * v).sum(axis=0), 1e-12)
        return mean, np.sqrt(var)


def _one_blas_thread():
    """Small matrices: BLAS threads only add overhead, 50x here when the cores are busy."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


class PB2Scheduler(PBTScheduler):
    """PBT's exploit; the explored values maximise a GP-UCB on (time, reward) -> reward change.

    At each perturbation a member logs (step, score, its parameters). Two successive
    logs of one member with the same parameters give an observation: the score's rate
    of change per perturbation interval, at the earlier step and score. A recipient's
    new parameters maximise mean + kappa * std of a GP fitted to the latest WINDOW
    observations, at the donor's step and score, over the continuous mutations' unit
    box (log coordinates for log domains); the members already given parameters at
    the same step count as observed (GP-BUCB), so a batch spreads out. Choices are
    perturbed as PBT does. See docs/schedulers.md.
    """

    OPTIONS = {
        **{k: v for k, v in PBTScheduler.OPTIONS.items() if k not in ("EXPLORE", "EXPLORE_SCALE")},
        "WINDOW": 200,
        "KAPPA": 0.0,
        "CANDIDATES": 256,
    }

    def __init__(self, searcher, *, window=200, kappa=0.0, candidates=256, **kwargs):
        super().__init__(searcher, **kwargs)
        if window < 2:
            raise ValueError(f"WINDOW must be at least 2 observations, got {window}")
        if kappa < 0:
            raise ValueError(f"KAPPA cannot be negative (0: the published schedule), got {kappa}")
        if candidates < 1:
            raise ValueError(f"CANDIDATES must be at least 1, got {candidates}")
        self.window = int(window)
        self.kappa = float(kappa)
        self.candidates = int(candidates)
        self.names: list[str] = []  # the continuous mutations the GP chooses
        self.anchors: dict[int, tuple[int, float, list[float]]] = {}  # member -> (step, score, unit params)
        self.observations: list[list[float]] = []  # [step, score, *unit params, rate]
        self.batch: list[tuple[int, list[float]]] = []  # (step, unit params) chosen at the latest step
        self.explores = {"gp": 0, "perturbation": 0}
        self.logged = 0  # observations ever logged (the window keeps the latest)
        self.theta: tuple | None = None  # the GP's hyperparameters, and `logged` when they were chosen
        self.theta_at = 0

    def setup(self, experiment):
        super().setup(experiment)
        self.names = [n for n, d in self.mutations.items() if not d.categorical]

    # ------------------------------------------------------------------ data

    def _unit(self, params: dict) -> list[float] | None:
        try:
            return [float(self.mutations[n].to_unit(params[n])) for n in self.names]
        except (KeyError, TypeError, ValueError):
            return None

    def on_result(self, trial: Trial, result: dict) -> Decision:
        step = int(result["step"])
        if self._due(trial.id, step):
            self._log(trial, step, self.score(result))
        return super().on_result(trial, result)

    def _log(self, trial: Trial, step: int, score: float) -> None:
        score = self._smoothed_peek(trial.id, score)
        u = self._unit(trial.params)
        if u is None or not math.isfinite(score):
            self.anchors.pop(trial.id, None)
            return
        prev = self.anchors.get(trial.id)
        if prev is not None and step > prev[0] and prev[2] == u:
            rate = (score - prev[1]) / ((step - prev[0]) / self.interval)
            self.observations.append([float(prev[0]), float(prev[1]), *prev[2], float(rate)])
            self.logged += 1
            if len(self.observations) > self.window:
                del self.observations[0]
        self.anchors[trial.id] = (step, score, u)

    def _smoothed_peek(self, trial_id: int, score: float) -> float:
        # The score PBT will rank this result by, without recording it twice.
        if self.smoothing == 1:
            return score
        recent = [v for v in (self.recent.get(trial_id, []) + [score])[-self.smoothing:] if math.isfinite(v)]
        return sum(recent) / len(recent) if recent else score

    # ------------------------------------------------------------------ explore

    def explore_for(self, recipient: Trial, donor: Trial) -> dict:
        new = self.explore(donor.params)  # choices (and anything off-domain) as PBT does
        anchor = self.anchors.get(donor.id)
        if not self.names or anchor is None or len(self.observations) < 2:
            self.explores["perturbation"] += 1
            return new
        with _one_blas_thread():
            u = self._select(anchor[0], anchor[1])
        for name, value in zip(self.names, u):
            new[name] = self.mutations[name].from_unit(float(value))
        self.explores["gp"] += 1
        # Its next log measures these parameters from the donor's state.
        self.anchors[recipient.id] = (anchor[0], anchor[1], self._unit(new))
        return new

    def _select(self, step: int, score: float) -> np.ndarray:
        data = np.array(self.observations, dtype=float)
        k = len(self.names)
        ts, rs, U, y = data[:, 0], data[:, 1], data[:, 2:2 + k], data[:, -1]
        # Time in perturbation intervals (epsilon is the forgetting per interval); the score
        # scaled to the data's range, as the rewards are (Ray's normalisation).
        t_of = lambda t: np.asarray(t, dtype=float) / self.interval  # noqa: E731
        lo, hi = float(rs.min()), float(rs.max())
        r_of = lambda r: (np.asarray(r, dtype=float) - lo) / (hi - lo + 1e-8)  # noqa: E731
        X = np.column_stack([t_of(ts), r_of(rs), U])
        yz = np.clip((y - y.mean()) / (y.std() + 1e-8), -2.0, 2.0)
        # The marginal-likelihood grid is most of an explore's cost (24 eigendecompositions); it
        # is rerun once the data has grown by a tenth since the last choice, in between the GP
        # keeps its hyperparameters and is refitted to the new data: a member's explore then
        # costs a Cholesky factorisation, not the grid.
        if self.theta is None or self.logged - self.theta_at >= max(1, len(X) // 10):
            gp = TimeVaryingGP(X, yz)
            self.theta, self.theta_at = gp.theta, self.logged
        else:
            gp = TimeVaryingGP(X, yz, theta=self.theta)
        fixed = np.array([float(t_of(step)), float(r_of(score))])
        self.batch = [(s, b) for s, b in self.batch if s >= step]
        if self.batch:
            # Mean from the data; spread from the data plus the batch at its own posterior mean.
            B = np.array([[*fixed, *b] for _, b in self.batch])
            yb = gp.predict(B)[0]
            spread = TimeVaryingGP(np.vstack([X, B]), np.concatenate([yz, yb]), theta=gp.theta)
        else:
            spread = gp
        kappa = self.kappa or math.sqrt(0.2 + max(0.0, math.log(0.4 * len(X))))
        rng = self._rng
        cand = rng.random((self.candidates, k))

        def ucb(C):
            Z = np.column_stack([np.repeat(fixed[None, :], len(C), axis=0), C])
            return gp.predict(Z)[0] + kappa * spread.predict(Z)[1]

        values = ucb(cand)
        best = cand[int(np.argmax(values))]
        # Refine around the best candidate: a few shrinking local searches.
        for scale in (0.1, 0.03, 0.01):
            local = np.clip(best + rng.normal(0.0, scale, (32, k)), 0.0, 1.0)
            lv = ucb(local)
            if lv.max() > values.max():
                best, values = local[int(np.argmax(lv))], lv
        self.batch.append((int(step), [float(v) for v in best]))
        return best

    # ------------------------------------------------------------------ state

    def _gone(self, trial: Trial) -> None:
        super()._gone(trial)
        self.anchors.pop(trial.id, None)

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "anchors": {t: (s, r, list(u)) for t, (s, r, u) in self.anchors.items()},
            "observations": [list(o) for o in self.observations],
            "batch": [(s, list(b)) for s, b in self.batch],
            "explores": dict(self.explores),
            "logged": self.logged, "theta": self.theta, "theta_at": self.theta_at,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.anchors = {t: (int(s), float(r), list(u)) for t, (s, r, u) in state["anchors"].items()}
        self.observations = [list(o) for o in state["observations"]]
        self.batch = [(int(s), list(b)) for s, b in state["batch"]]
        self.explores = dict(state["explores"])
        self.logged = int(state.get("logged", len(self.observations)))
        theta = state.get("theta")
        self.theta = tuple(float(v) for v in theta) if theta is not None else None
        self.theta_at = int(state.get("theta_at", 0))


@hookimpl
def register_schedulers(register):
    register("pb2", PB2Scheduler, description="population based bandits: PBT with a GP-UCB explore step")
