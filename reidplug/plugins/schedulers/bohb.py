"""BOHB: Hyperband (or ASHA) with the KDE model."""

from __future__ import annotations

from reidplug.core.hookspecs import hookimpl
from reidplug.plugins.schedulers.asha import ASHAScheduler
from reidplug.plugins.schedulers.hyperband import HyperbandScheduler
from reidplug.plugins.searchers.bohb import KDE_OPTIONS, BOHBSearcher
from reidplug.plugins.searchers.random import RandomSearcher

_KDE_KEYS = tuple(name.lower() for name in KDE_OPTIONS)


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


class BOHBScheduler(HyperbandScheduler):
    """Hyperband whose new configurations come from BOHB's kernel-density model (hpbandster's BOHB)."""

    OPTIONS = {**HyperbandScheduler.OPTIONS, **KDE_OPTIONS}

    def __init__(self, searcher, **kwargs):
        kde = {k: kwargs.pop(k) for k in _KDE_KEYS if k in kwargs}
        super().__init__(searcher, **kwargs)
        self.searcher = kde_searcher(searcher, kde, "bohb")

    def setup(self, experiment):
        experiment.searcher = self.searcher  # the experiment reports results to the model it samples from
        super().setup(experiment)


class BOHBAsyncScheduler(ASHAScheduler):
    """ASHA whose new configurations come from BOHB's kernel-density model.

    With TYPE stop, a trial arriving at a rung is compared with the last WINDOW trials
    recorded there, not with all of them: as the model improves, its proposals beat the
    early random ones, and against the whole history nearly every newcomer would pass
    and take the budget to the top (0: the whole history, as ASHA).
    """

    OPTIONS = {**ASHAScheduler.OPTIONS, **KDE_OPTIONS, "WINDOW": 9}

    def __init__(self, searcher, *, window=9, **kwargs):
        kde = {k: kwargs.pop(k) for k in _KDE_KEYS if k in kwargs}
        super().__init__(searcher, **kwargs)
        if window < 0:
            raise ValueError(f"WINDOW cannot be negative (0: the whole rung), got {window}")
        self.window = int(window)
        self.searcher = kde_searcher(searcher, kde, "bohb_async")

    def _cutoff(self, rung):
        if not self.window:
            return super()._cutoff(rung)
        return rung.recent_quantile(1.0 - 1.0 / self.rf, self.window), f" of the last {self.window}"

    def setup(self, experiment):
        experiment.searcher = self.searcher
        super().setup(experiment)


@hookimpl
def register_schedulers(register):
    register("bohb", BOHBScheduler, description="Hyperband with BOHB's kernel-density model (hpbandster)")
    register("bohb_async", BOHBAsyncScheduler, description="ASHA with BOHB's kernel-density model")
