"""Building the Re-ID model described by a config."""

from __future__ import annotations

from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.choices import choose, with_file
from reidplug.reid.modeling.meta_arch import META_ARCHITECTURES, ReidModel

__all__ = ["META_ARCHITECTURES", "build_model"]


def build_model(cfg, num_classes: int) -> ReidModel:
    """The model of `cfg.MODEL` for `num_classes` training identities (MODEL.HEADS.NUM_CLASSES > 0 overrides)."""
    try:
        return _build(cfg, num_classes)
    except ConfigError as exc:
        raise with_file(exc, cfg) from None


def _build(cfg, num_classes: int) -> ReidModel:
    mcfg = cfg.MODEL
    arch = choose(META_ARCHITECTURES, mcfg.META_ARCHITECTURE, "MODEL.META_ARCHITECTURE")
    if mcfg.HEADS.NUM_CLASSES > 0:
        num_classes = mcfg.HEADS.NUM_CLASSES
    if num_classes <= 0:
        raise ConfigError(f"needs a positive number of classes, got {num_classes}", key="MODEL.HEADS.NUM_CLASSES")
    for key in ("PIXEL_MEAN", "PIXEL_STD"):
        values = getattr(mcfg, key)
        if len(values) != 3:
            raise ConfigError(f"needs 3 values (R, G, B), got {values!r}", key=f"MODEL.{key}")
    if min(mcfg.PIXEL_STD) <= 0:
        raise ConfigError(f"must be positive, got {mcfg.PIXEL_STD!r}", key="MODEL.PIXEL_STD")
    model = arch.from_config(cfg, num_classes)
    children = dict(model.named_children())
    unknown = [name for name in mcfg.FREEZE_LAYERS if name not in children]
    if unknown:
        raise ConfigError(f"unknown layer {unknown[0]!r}; known: {', '.join(children)}", key="MODEL.FREEZE_LAYERS")
    return model
