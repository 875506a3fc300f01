"""Which result values and parameters the metric-logging reporters (TensorBoard, MLflow) log."""

from __future__ import annotations

import importlib.util
import math

# Bookkeeping keys of a result, not measurements.
NOT_METRICS = frozenset({"step", "trial_id", "timestamp", "done"})


def scalar_metrics(result: dict) -> dict[str, float]:
    """The numeric values of a result (bools and bookkeeping keys left out)."""
    return {
        key: float(value) for key, value in result.items()
        if key not in NOT_METRICS and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def numeric_params(params: dict) -> dict[str, float]:
    return {k: float(v) for k, v in params.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class ParamTracker:
    """The params each trial trains with, which PBT changes between launches, to log them over time.

    A result hook may already see a trial's new params (a PBT exploit happens inside the
    decision on that result), but the result was made with the params of its launch.
    """

    def __init__(self, experiment):
        self.always = str(experiment.cfg.TUNE.SCHEDULER).lower() == "pbt"
        self._first: dict[int, dict] = {}
        self._launched: dict[int, dict] = {}

    def start(self, trial) -> None:
        self._launched[trial.id] = dict(trial.params)
        self._first.setdefault(trial.id, dict(trial.params))

    def first(self, trial) -> dict:
        """The parameters a trial started with (the first ones this process saw)."""
        return self._first.setdefault(trial.id, dict(trial.params))

    def in_force(self, trial) -> dict:
        """The parameters the trial's current launch trains with."""
        return self._launched.get(trial.id, trial.params)

    def varying(self, trial) -> bool:
        return self.always or self.in_force(trial) != self.first(trial)


def require(module: str, extra: str, reporter: str) -> None:
    """A ValueError (the config error at TUNE.REPORTERS) when an optional package is missing."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValueError(
            f"the {reporter!r} reporter needs the {module} package, which is not installed: "
            f"pip install 'reidplug[{extra}]' (or remove {reporter!r} from the list)"
        )
