"""BOHB: Hyperband with the KDE model."""

from __future__ import annotations

from reidplug.core.hookspecs import hookimpl
from reidplug.plugins.schedulers.hyperband import HyperbandScheduler
from reidplug.plugins.searchers.bohb import KDE_OPTIONS, BOHBSearcher
from reidplug.plugins.searchers.random import RandomSearcher

KDE_KEYS = tuple(name.lower() for name in KDE_OPTIONS)


def kde_searcher(searcher, options: dict, name: str) -> BOHBSearcher:
    """The BOHB model to use: the configured one if it is already BOHB's, else a new one in place of random."""
    if isinstance(searcher, BOHBSearcher):
        return searcher
    if type(searcher) is not RandomSearcher:
        raise ValueError(
            f"the {name} scheduler samples with its own model (the bohb searcher); leave TUNE.SEARCHER at its "
            f"default, or use TUNE.SCHEDULER {'hyperband' if name == 'bohb' else 'asha'} to pair "
            f"{type(searcher).__name__} with successive halving"
        )
    return BOHBSearcher(
        searcher.space, metric=searcher.metric, mode=searcher.mode, seed=searcher.seed,
        points_to_evaluate=list(searcher._points), max_concurrent=searcher.max_concurrent, **options,
    )


def curve_score(searcher: BOHBSearcher, trial, budget: int, score: float) -> float:
    """A rung's score for `trial`: minus the loss its curve points to at the largest budget, if the model has one."""
    predicted = searcher.predicted_loss(trial.id, budget)
    return score if predicted is None else -predicted


class BOHBScheduler(HyperbandScheduler):
    """Hyperband whose new configurations come from BOHB's kernel-density model (hpbandster's BOHB)."""

    OPTIONS = {**HyperbandScheduler.OPTIONS, **KDE_OPTIONS}

    def __init__(self, searcher, **kwargs):
        kde = {k: kwargs.pop(k) for k in KDE_KEYS if k in kwargs}
        super().__init__(searcher, **kwargs)
        self.searcher = kde_searcher(searcher, kde, "bohb")

    def _rung_score(self, trial, budget, score):
        return curve_score(self.searcher, trial, budget, score)

    def setup(self, experiment):
        experiment.searcher = self.searcher  # the experiment reports results to the model it samples from
        super().setup(experiment)


@hookimpl
def register_schedulers(register):
    register("bohb", BOHBScheduler, description="Hyperband with BOHB's kernel-density model (hpbandster)")
