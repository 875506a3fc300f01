"""Backbones: name resolution through the plugin registry, and local pretrained weights."""

from __future__ import annotations

from torch import nn

from reidplug.core.errors import ConfigError, PluginError
from reidplug.core.manager import registry
from reidplug.reid.modeling.backbones.pretrained import load_pretrained
from reidplug.reid.modeling.choices import with_file

# FastReID names one builder for all ResNets and picks the depth with DEPTH.
FASTREID_RESNET = "build_resnet_backbone"
FASTREID_DEPTHS = {"18x": "resnet18", "34x": "resnet34", "50x": "resnet50", "101x": "resnet101"}


def backbone_name(bcfg) -> str:
    """The registered name a MODEL.BACKBONE section asks for, FastReID's spelling included."""
    if bcfg.NAME != FASTREID_RESNET:
        return bcfg.NAME
    depth = str(bcfg.DEPTH).strip().lower()
    depth = depth if depth.endswith("x") else f"{depth}x"
    if depth not in FASTREID_DEPTHS:
        raise ConfigError(
            f"{FASTREID_RESNET} needs a depth among {', '.join(FASTREID_DEPTHS)}, got {bcfg.DEPTH!r}",
            key="MODEL.BACKBONE.DEPTH",
        )
    return FASTREID_DEPTHS[depth]


def build_backbone(cfg) -> nn.Module:
    """The backbone of `cfg.MODEL.BACKBONE`, with local pretrained weights when PRETRAIN is true."""
    try:
        return _build(cfg.MODEL.BACKBONE)
    except ConfigError as exc:
        raise with_file(exc, cfg) from None


def _build(bcfg) -> nn.Module:
    if bcfg.NORM != "BN":
        raise ConfigError(f"only 'BN' is supported, got {bcfg.NORM!r}", key="MODEL.BACKBONE.NORM")
    name = backbone_name(bcfg)
    builder = registry("backbone").get(name, config_key="MODEL.BACKBONE.NAME")
    model = builder(bcfg)
    if not isinstance(getattr(model, "out_channels", None), int):
        raise PluginError(f"backbone {name!r} has no integer `out_channels` attribute")
    if bcfg.PRETRAIN:
        load_pretrained(model, bcfg.PRETRAIN_PATH)
    return model
