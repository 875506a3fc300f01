"""Console view of an experiment: a line per trial event, a status line, and quiet mode."""

from __future__ import annotations

import sys
import time

from reidplug.core.hookspecs import hookimpl
from reidplug.core.reporter import Reporter


class ConsoleReporter(Reporter):
    """Prints trial starts, results, decisions and the best so far."""

    OPTIONS = {"QUIET": False, "EVERY_S": 0.0}

    def __init__(self, experiment, *, quiet=False, every_s=0.0):
        super().__init__(experiment)
        self.quiet = quiet
        self.every_s = every_s
        self._last = 0.0
        self.out = sys.stdout

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    @hookimpl
    def on_experiment_start(self, experiment):
        tune = experiment.cfg.TUNE
        self._say(
            f"[reidplug] experiment {experiment.name!r} in {experiment.dir}: up to {tune.NUM_TRIALS} trials, "
            f"searcher {tune.SEARCHER}, scheduler {tune.SCHEDULER}, {tune.MAX_CONCURRENT} at a time"
        )

    @hookimpl
    def on_trial_start(self, trial):
        how = "resumed" if trial.restore_from else "started"
        self._say(f"[reidplug] trial {trial.id} {how}: {_params(trial.params)}")

    @hookimpl
    def on_trial_result(self, trial, result):
        now = time.time()
        if now - self._last < self.every_s:
            return
        self._last = now
        metric = self.experiment.metric
        best = self.experiment.best_trial()
        best_txt = f" | best {metric}={best.last_result[metric]:.4g} (trial {best.id})" if best else ""
        value = result.get(metric)
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else value
        self._say(f"[reidplug] trial {trial.id} step {result['step']}: {metric}={shown}{best_txt}")

    @hookimpl
    def on_trial_decision(self, trial, result, decision, info):
        if decision.value != "CONTINUE":
            reason = f" ({info['reason']})" if info and info.get("reason") else ""
            self._say(f"[reidplug] trial {trial.id}: {decision.value.lower()}{reason}")

    @hookimpl
    def on_trial_error(self, trial, error):
        print(f"[reidplug] trial {trial.id} failed: {error}", file=sys.stderr, flush=True)


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


@hookimpl
def register_reporters(register):
    register("console", ConsoleReporter, description="progress lines on the console")
