"""Which keys of FastReID's defaults.py reidplug implements, and the refusal of the others.

The schema holds every FastReID key with FastReID's default, so a FastReID file
always parses. A key reidplug does not implement is refused only when its value
asks for the missing behaviour:

- a key without a gate is refused when it differs from FastReID's default
  (a file that spells the default out asks for nothing);
- a key inside a feature switched by another key (INPUT.CROP.SIZE under
  INPUT.CROP.ENABLED) is refused only while that switch is on; FastReID does not
  read it either while the switch is off.

Nothing is accepted and then ignored. The refusal is one line naming the file and
the key. tests/test_fastreid_config.py checks that every schema key FastReID has
appears in exactly one of HONOURED and NOT_IMPLEMENTED.
"""

from __future__ import annotations

from typing import Any, Callable

from reidplug.core.errors import ConfigError

# FastReID keys with an effect in reidplug (the ViT keys: the build_vit_backbone backbone;
# SIE_COE scales a camera embedding FastReID's ViT builder never creates, so it acts in neither).
HONOURED = frozenset({
    "MODEL.DEVICE", "MODEL.META_ARCHITECTURE", "MODEL.FREEZE_LAYERS", "MODEL.WEIGHTS",
    "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD",
    "MODEL.BACKBONE.NAME", "MODEL.BACKBONE.DEPTH", "MODEL.BACKBONE.LAST_STRIDE", "MODEL.BACKBONE.NORM",
    "MODEL.BACKBONE.WITH_IBN", "MODEL.BACKBONE.WITH_NL", "MODEL.BACKBONE.PRETRAIN", "MODEL.BACKBONE.PRETRAIN_PATH",
    "MODEL.BACKBONE.SIE_COE", "MODEL.BACKBONE.STRIDE_SIZE", "MODEL.BACKBONE.DROP_PATH_RATIO",
    "MODEL.BACKBONE.DROP_RATIO", "MODEL.BACKBONE.ATT_DROP_RATE",
    # The backbone reports its width; FastReID requires FEAT_DIM to equal it, reidplug reads it off the model.
    "MODEL.BACKBONE.FEAT_DIM",
    "MODEL.HEADS.NAME", "MODEL.HEADS.NORM", "MODEL.HEADS.NUM_CLASSES", "MODEL.HEADS.EMBEDDING_DIM",
    "MODEL.HEADS.WITH_BNNECK", "MODEL.HEADS.NECK_FEAT", "MODEL.HEADS.POOL_LAYER", "MODEL.HEADS.CLS_LAYER",
    "MODEL.HEADS.MARGIN", "MODEL.HEADS.SCALE",
    "MODEL.LOSSES.NAME", "MODEL.LOSSES.CE.EPSILON", "MODEL.LOSSES.CE.ALPHA", "MODEL.LOSSES.CE.SCALE",
    "MODEL.LOSSES.TRI.MARGIN", "MODEL.LOSSES.TRI.NORM_FEAT", "MODEL.LOSSES.TRI.HARD_MINING", "MODEL.LOSSES.TRI.SCALE",
    "MODEL.LOSSES.CIRCLE.MARGIN", "MODEL.LOSSES.CIRCLE.GAMMA", "MODEL.LOSSES.CIRCLE.SCALE",
    "MODEL.LOSSES.COSFACE.MARGIN", "MODEL.LOSSES.COSFACE.GAMMA", "MODEL.LOSSES.COSFACE.SCALE",
    "INPUT.SIZE_TRAIN", "INPUT.SIZE_TEST", "INPUT.FLIP.ENABLED", "INPUT.FLIP.PROB",
    "INPUT.PADDING.ENABLED", "INPUT.PADDING.MODE", "INPUT.PADDING.SIZE",
    "INPUT.CJ.ENABLED", "INPUT.CJ.PROB", "INPUT.CJ.BRIGHTNESS", "INPUT.CJ.CONTRAST", "INPUT.CJ.SATURATION",
    "INPUT.CJ.HUE", "INPUT.AUTOAUG.ENABLED", "INPUT.AUTOAUG.PROB",
    "INPUT.REA.ENABLED", "INPUT.REA.PROB", "INPUT.REA.VALUE",
    "DATASETS.NAMES", "DATASETS.TESTS", "DATASETS.COMBINEALL",
    "DATALOADER.SAMPLER_TRAIN", "DATALOADER.NUM_INSTANCE", "DATALOADER.NUM_WORKERS",
    "SOLVER.AMP.ENABLED", "SOLVER.OPT", "SOLVER.MAX_EPOCH", "SOLVER.BASE_LR", "SOLVER.HEADS_LR_FACTOR",
    "SOLVER.MOMENTUM", "SOLVER.NESTEROV", "SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_NORM",
    "SOLVER.BIAS_LR_FACTOR", "SOLVER.WEIGHT_DECAY_BIAS", "SOLVER.SCHED", "SOLVER.DELAY_EPOCHS", "SOLVER.GAMMA",
    "SOLVER.STEPS", "SOLVER.ETA_MIN_LR", "SOLVER.WARMUP_FACTOR", "SOLVER.WARMUP_ITERS", "SOLVER.WARMUP_METHOD",
    "SOLVER.FREEZE_ITERS", "SOLVER.CHECKPOINT_PERIOD", "SOLVER.IMS_PER_BATCH",
    "SOLVER.CLIP_GRADIENTS.ENABLED", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE",
    "SOLVER.CLIP_GRADIENTS.NORM_TYPE",
    "TEST.EVAL_PERIOD", "TEST.IMS_PER_BATCH", "TEST.METRIC", "TEST.FLIP.ENABLED",
    "TEST.AQE.ENABLED", "TEST.AQE.ALPHA", "TEST.AQE.QE_TIME", "TEST.AQE.QE_K",
    "TEST.RERANK.ENABLED", "TEST.RERANK.K1", "TEST.RERANK.K2", "TEST.RERANK.LAMBDA",
    "TEST.PRECISE_BN.ENABLED", "TEST.PRECISE_BN.NUM_ITER",
    "OUTPUT_DIR", "CUDNN_BENCHMARK",
})


def _on(key: str) -> Callable[[Any], bool]:
    def gate(cfg) -> bool:
        return bool(_get(cfg, key))

    gate.__doc__ = f"while {key} is true"
    return gate


def _other_precise_bn_set(cfg) -> bool:
    # reidplug recomputes BN statistics on the training set; FastReID on this named set.
    return cfg.TEST.PRECISE_BN.ENABLED and [cfg.TEST.PRECISE_BN.DATASET] != list(cfg.DATASETS.NAMES)


_other_precise_bn_set.__doc__ = "while TEST.PRECISE_BN.ENABLED is true and it names a set other than DATASETS.NAMES"

# key -> (the FastReID feature, gate). Gate None: refused when the value differs from FastReID's default.
NOT_IMPLEMENTED: dict[str, tuple[str, Callable[[Any], bool] | None]] = {
    "MODEL.QUEUE_SIZE": ("the MoCo memory queue", None),
    "MODEL.BACKBONE.WITH_SE": ("squeeze-and-excitation blocks", None),
    "MODEL.LOSSES.FL.ALPHA": ("the focal loss", None),
    "MODEL.LOSSES.FL.GAMMA": ("the focal loss", None),
    "MODEL.LOSSES.FL.SCALE": ("the focal loss", None),
    "KD.MODEL_CONFIG": ("knowledge distillation", None),
    "KD.MODEL_WEIGHTS": ("knowledge distillation", None),
    "KD.EMA.ENABLED": ("the distillation teacher's moving average", None),
    "KD.EMA.MOMENTUM": ("the distillation teacher's moving average", _on("KD.EMA.ENABLED")),
    "INPUT.CROP.ENABLED": ("random resized crop", None),
    "INPUT.CROP.SIZE": ("random resized crop", _on("INPUT.CROP.ENABLED")),
    "INPUT.CROP.SCALE": ("random resized crop", _on("INPUT.CROP.ENABLED")),
    "INPUT.CROP.RATIO": ("random resized crop", _on("INPUT.CROP.ENABLED")),
    "INPUT.AFFINE.ENABLED": ("random affine augmentation", None),
    "INPUT.AUGMIX.ENABLED": ("AugMix augmentation", None),
    "INPUT.AUGMIX.PROB": ("AugMix augmentation", _on("INPUT.AUGMIX.ENABLED")),
    "INPUT.RPT.ENABLED": ("random patch augmentation", None),
    "INPUT.RPT.PROB": ("random patch augmentation", _on("INPUT.RPT.ENABLED")),
    "DATALOADER.SET_WEIGHT": ("per-dataset sampling weights", None),
    "TEST.ROC.ENABLED": ("ROC evaluation", None),
    "TEST.PRECISE_BN.DATASET": ("precise BN on a set other than the training set", _other_precise_bn_set),
}


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return a == b


def refused(cfg) -> list[tuple[str, str]]:
    """(key, reason) for each FastReID key whose value asks for what reidplug does not implement."""
    from reidplug.core.schema import Config

    defaults = Config()
    out = []
    for key, (feature, gate) in NOT_IMPLEMENTED.items():
        value = _get(cfg, key)
        asks = gate(cfg) if gate is not None else not _same(value, _get(defaults, key))
        if not asks:
            continue
        if gate is None:
            fix = f"remove the key or set FastReID's default {_get(defaults, key)!r} (got {value!r})"
        else:
            fix = f"asked for {gate.__doc__}"
        out.append((key, f"a FastReID key reidplug does not implement ({feature}): {fix}"))
    return out


def check_implemented(cfg, origins) -> None:
    """Raise the first refusal as a ConfigError naming the file the key came from."""
    for key, reason in refused(cfg):
        raise ConfigError(reason, file=origins.of(key), key=key)
