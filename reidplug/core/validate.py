"""`reidplug config validate`: everything a run would check before it starts, without running."""

from __future__ import annotations

from reidplug.core.config import load_config
from reidplug.core.manager import plugin_manager
from reidplug.core.plural import plural


def validate(path, overrides=()) -> list[str]:
    """Raise the first problem as a UserError; return short notes on what was checked."""
    from reidplug.core.experiment import Experiment

    cfg = load_config(path, overrides)
    pm = plugin_manager()
    notes = []
    reid = cfg.TUNE.TRAINABLE == "reid"
    if reid:
        trainer = cfg.SOLVER.TRAINER or ("amp" if cfg.SOLVER.AMP.ENABLED else "fp32")
        pm.registry("trainer").entry(trainer, config_key="SOLVER.TRAINER")
        backbone = cfg.MODEL.BACKBONE.NAME
        if backbone != "build_resnet_backbone":
            pm.registry("backbone").entry(backbone, config_key="MODEL.BACKBONE.NAME")
        for key in ("NAMES", "TESTS"):
            for name in getattr(cfg.DATASETS, key):
                pm.registry("dataset").entry(name, config_key=f"DATASETS.{key}")
    exp = Experiment(cfg, dry_run=True)
    if exp.space.domains:
        notes.append(f"search space of {plural(len(exp.space), 'parameter')}")
    notes.append(f"searcher {cfg.TUNE.SEARCHER}, scheduler {cfg.TUNE.SCHEDULER}")
    return notes
