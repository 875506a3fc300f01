"""Backbones: found by MODEL.BACKBONE.NAME in the plugin registry, with local pretrained weights."""

from __future__ import annotations

import inspect

from torch import nn

from reidplug.core.errors import ConfigError, PluginError
from reidplug.core.manager import registry
from reidplug.reid.modeling.backbones.pretrained import load_pretrained
from reidplug.reid.modeling.choices import with_file


def build_backbone(cfg) -> nn.Module:
    """The backbone of `cfg.MODEL.BACKBONE`, with local pretrained weights when PRETRAIN is true."""
    try:
        return _build(cfg.MODEL.BACKBONE, input_size=tuple(cfg.INPUT.SIZE_TRAIN))
    except ConfigError as exc:
        raise with_file(exc, cfg) from None


def _build(bcfg, input_size: tuple[int, ...] | None = None) -> nn.Module:
    if bcfg.NORM != "BN":
        raise ConfigError(f"only 'BN' is supported, got {bcfg.NORM!r}", key="MODEL.BACKBONE.NORM")
    name = bcfg.NAME
    builder = registry("backbone").get(name, config_key="MODEL.BACKBONE.NAME")
    # A builder sized by the images (a ViT's position grid) declares an `input_size` parameter.
    if input_size and "input_size" in inspect.signature(builder).parameters:
        model = builder(bcfg, input_size=input_size)
    else:
        model = builder(bcfg)
    if not isinstance(getattr(model, "out_channels", None), int):
        raise PluginError(f"backbone {name!r} has no integer `out_channels` attribute")
    if bcfg.PRETRAIN:
        load_pretrained(model, bcfg.PRETRAIN_PATH)
    return model
