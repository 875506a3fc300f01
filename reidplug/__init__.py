"""reidplug: person re-identification training and search, built from plugins."""

__version__ = "0.1.0"

# The public API is resolved lazily so that `import reidplug` stays free of torch.
_LAZY = {
    "Tuner": "reidplug.core.tuner:Tuner",
    "Experiment": "reidplug.core.experiment:Experiment",
    "load_config": "reidplug.core.config:load_config",
    "hookimpl": "reidplug.core.hookspecs:hookimpl",
    "Trainable": "reidplug.core.trainable:Trainable",
    "Searcher": "reidplug.core.searcher:Searcher",
    "Scheduler": "reidplug.core.scheduler:Scheduler",
    "train": "reidplug.reid.api:train",
    "evaluate": "reidplug.reid.api:evaluate",
    "FeatureExtractor": "reidplug.reid.deploy.extract:FeatureExtractor",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        from reidplug.core.registry import resolve

        return resolve(_LAZY[name])
    raise AttributeError(f"module 'reidplug' has no attribute {name!r}")
