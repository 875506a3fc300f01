"""Resolving every component a Re-ID config names, without data and without allocating a model.

`reidplug config validate` calls this so that a file that validates does not fail
later on a name. Each name is looked up in the same table or registry its builder
uses, so a meta-architecture, backbone or dataset that a plugin adds is known here
at once. The model is then built on PyTorch's meta device, which runs every
builder's own checks (a depth a backbone lacks, a head option) at no memory cost.
"""

from __future__ import annotations

import torch

from reidplug.core.errors import ConfigError
from reidplug.core.manager import plugin_manager
from reidplug.reid.modeling.choices import choose, with_file


def resolve_components(cfg) -> list[str]:
    """Raise the first unknown name or builder error as a ConfigError naming its file; return short notes."""
    try:
        return _resolve(cfg)
    except ConfigError as exc:
        raise with_file(exc, cfg) from None


def _resolve(cfg) -> list[str]:
    from reidplug.reid.data.samplers import SAMPLERS
    from reidplug.reid.engine.optim import build_optimizer
    from reidplug.reid.modeling.build import META_ARCHITECTURES
    from reidplug.reid.modeling.heads import HEADS
    from reidplug.reid.modeling.heads.classifiers import CLASSIFIERS
    from reidplug.reid.modeling.losses import check_loss_names
    from reidplug.reid.modeling.pooling import POOLS

    pm = plugin_manager()
    model = cfg.MODEL
    choose(META_ARCHITECTURES, model.META_ARCHITECTURE, "MODEL.META_ARCHITECTURE")
    pm.registry("backbone").entry(model.BACKBONE.NAME, config_key="MODEL.BACKBONE.NAME")
    choose(HEADS, model.HEADS.NAME, "MODEL.HEADS.NAME")
    choose(POOLS, model.HEADS.POOL_LAYER, "MODEL.HEADS.POOL_LAYER")
    choose(CLASSIFIERS, model.HEADS.CLS_LAYER, "MODEL.HEADS.CLS_LAYER")
    check_loss_names(model.LOSSES.NAME)
    for key in ("NAMES", "TESTS"):
        for name in getattr(cfg.DATASETS, key):
            pm.registry("dataset").entry(name, config_key=f"DATASETS.{key}")
    sampler = cfg.DATALOADER.SAMPLER_TRAIN
    if sampler.lower() not in {s.lower() for s in SAMPLERS}:
        raise ConfigError(f"unknown sampler {sampler!r}; known samplers: {', '.join(SAMPLERS)}",
                          key="DATALOADER.SAMPLER_TRAIN")
    trainer = cfg.SOLVER.TRAINER or ("amp" if cfg.SOLVER.AMP.ENABLED else "fp32")
    pm.registry("trainer").entry(trainer, config_key="SOLVER.TRAINER")
    build_optimizer(cfg, torch.nn.Linear(1, 1))  # SOLVER.OPT, through the builder's own lookup
    return [f"model {model.META_ARCHITECTURE} on {model.BACKBONE.NAME}", *_build_on_meta(cfg)]


def _build_on_meta(cfg) -> list[str]:
    """Build the model with meta tensors so the builders check their options; nothing is allocated."""
    from reidplug.core.config import with_params
    from reidplug.reid.modeling.build import build_model

    from reidplug.reid.modeling.backbones.pretrained import weights_file

    if cfg.MODEL.BACKBONE.PRETRAIN:
        weights_file(cfg.MODEL.BACKBONE.PRETRAIN_PATH)  # the file must exist; it is read at train time
    dry = with_params(cfg, {"MODEL.BACKBONE.PRETRAIN": False}, source="<validate>")
    try:
        with torch.device("meta"):
            built = build_model(dry, num_classes=max(cfg.MODEL.HEADS.NUM_CLASSES, 2))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a builder that cannot run on meta tensors is checked at train time
        return [f"model not built here ({type(exc).__name__})"]
    count = sum(p.numel() for p in built.parameters())
    return [f"{count / 1e6:.1f}M parameters"]
