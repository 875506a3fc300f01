"""Re-ID losses and their selection by MODEL.LOSSES.NAME."""

from __future__ import annotations

import torch

from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.losses.cross_entropy import cross_entropy_loss, smoothed_targets
from reidplug.reid.modeling.losses.pairwise import pairwise_circle_loss, pairwise_cosface_loss
from reidplug.reid.modeling.losses.triplet import triplet_loss

__all__ = [
    "LOSS_KEYS",
    "check_loss_names",
    "compute_losses",
    "cross_entropy_loss",
    "pairwise_circle_loss",
    "pairwise_cosface_loss",
    "smoothed_targets",
    "triplet_loss",
]

# Config name -> key of the loss in the dict of losses.
LOSS_KEYS = {
    "CrossEntropyLoss": "loss_cls",
    "TripletLoss": "loss_triplet",
    "CircleLoss": "loss_circle",
    "Cosface": "loss_cosface",
}


def check_loss_names(names) -> None:
    """A ConfigError at MODEL.LOSSES.NAME for an unknown or repeated name, or an empty list."""
    if not names:
        raise ConfigError(f"name at least one loss among {', '.join(LOSS_KEYS)}", key="MODEL.LOSSES.NAME")
    for name in names:
        if name not in LOSS_KEYS:
            raise ConfigError(f"unknown loss {name!r}; known: {', '.join(LOSS_KEYS)}", key="MODEL.LOSSES.NAME")
    if len(set(names)) != len(names):
        raise ConfigError(f"a loss is named twice: {list(names)!r}", key="MODEL.LOSSES.NAME")


def compute_losses(cls_outputs: torch.Tensor | None, features: torch.Tensor, targets: torch.Tensor, lcfg) -> dict:
    """The configured losses, each scaled by its SCALE, by their `loss_*` keys (cls_outputs: margin-applied logits)."""
    check_loss_names(lcfg.NAME)
    losses = {}
    for name in lcfg.NAME:
        if name == "CrossEntropyLoss":
            value = cross_entropy_loss(cls_outputs, targets, lcfg.CE.EPSILON, lcfg.CE.ALPHA) * lcfg.CE.SCALE
        elif name == "TripletLoss":
            tri = lcfg.TRI
            value = triplet_loss(features, targets, tri.MARGIN, tri.NORM_FEAT, tri.HARD_MINING) * tri.SCALE
        elif name == "CircleLoss":
            c = lcfg.CIRCLE
            value = pairwise_circle_loss(features, targets, c.MARGIN, c.GAMMA) * c.SCALE
        else:
            c = lcfg.COSFACE
            value = pairwise_cosface_loss(features, targets, c.MARGIN, c.GAMMA) * c.SCALE
        losses[LOSS_KEYS[name]] = value
    return losses
