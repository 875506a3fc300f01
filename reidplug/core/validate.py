"""`reidplug config validate`: everything a run would check before it starts, without running."""

from __future__ import annotations

from reidplug.core.config import load_config
from reidplug.core.plural import plural


def validate(path, overrides=()) -> list[str]:
    """Raise the first problem as a UserError; return short notes on what was checked."""
    from reidplug.core.experiment import Experiment

    cfg = load_config(path, overrides)
    # The search's own components first: they need no PyTorch, so a misspelt searcher or a bad
    # space is reported in a fraction of a second instead of after a model build.
    exp = Experiment(cfg, dry_run=True)
    notes = []
    if cfg.TUNE.TRAINABLE == "reid":
        from reidplug.reid.resolve import resolve_components

        notes.extend(resolve_components(cfg))
    if exp.space.domains:
        notes.append(f"search space of {plural(len(exp.space), 'parameter')}")
    notes.append(f"searcher {cfg.TUNE.SEARCHER}, scheduler {cfg.TUNE.SCHEDULER}")
    return notes
