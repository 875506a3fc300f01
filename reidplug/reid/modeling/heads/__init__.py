"""Heads: the embedding head with its pooling, BNNeck and classifier."""

from __future__ import annotations

from reidplug.core.errors import ConfigError
from reidplug.reid.modeling.choices import choose
from reidplug.reid.modeling.heads.classifiers import CLASSIFIERS
from reidplug.reid.modeling.heads.embedding import EmbeddingHead
from reidplug.reid.modeling.pooling import build_pooling

HEADS = {"EmbeddingHead": EmbeddingHead}


def build_heads(hcfg, in_channels: int, num_classes: int) -> EmbeddingHead:
    """The head described by MODEL.HEADS, on a backbone of `in_channels` channels."""
    head_cls = choose(HEADS, hcfg.NAME, "MODEL.HEADS.NAME")
    if hcfg.NORM != "BN":
        raise ConfigError(f"only 'BN' is supported, got {hcfg.NORM!r}", key="MODEL.HEADS.NORM")
    if hcfg.EMBEDDING_DIM < 0:
        raise ConfigError(
            f"must be 0 (no reduction) or positive, got {hcfg.EMBEDDING_DIM}", key="MODEL.HEADS.EMBEDDING_DIM"
        )
    if hcfg.NECK_FEAT not in ("before", "after"):
        raise ConfigError(f"must be 'before' or 'after', got {hcfg.NECK_FEAT!r}", key="MODEL.HEADS.NECK_FEAT")
    classifier_cls = choose(CLASSIFIERS, hcfg.CLS_LAYER, "MODEL.HEADS.CLS_LAYER")
    return head_cls(
        build_pooling(hcfg),
        in_channels,
        classifier_cls,
        num_classes,
        embedding_dim=hcfg.EMBEDDING_DIM,
        with_bnneck=hcfg.WITH_BNNECK,
        neck_feat=hcfg.NECK_FEAT,
        scale=hcfg.SCALE,
        margin=hcfg.MARGIN,
    )
