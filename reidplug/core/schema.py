"""The typed config schema. Every key of FastReID's fastreid/config/defaults.py, with its value.

A file written for FastReID that leaves a key out therefore gets FastReID's
model; the project's own configs say what they change. Keys FastReID does not
have (TUNE, DATASETS.ROOT/SYNTH, DATALOADER.CACHE_IMAGES, SOLVER.TRAINER/KEEP_LAST/
NAN_POLICY/MAX_CONSECUTIVE_NAN/WARMUP_EPOCHS, SEED, DETERMINISTIC, MODEL.HEADS.GEM_P, MODEL.BACKBONE.NL_REDUCTION)
are reidplug's.
Which FastReID keys reidplug implements is listed in reidplug/core/fastreid_keys.py.

Sections whose value may also be a bare bool (`SOLVER: {AMP: True}`) have an
ENABLED field; the loader expands the bool into it.
"""

from __future__ import annotations

from typing import Literal

from attrs import Factory, define

# ImageNet statistics on the 0..255 scale, as FastReID writes them.
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


@define(kw_only=True)
class BackboneCfg:
    # FastReID writes NAME: build_resnet_backbone with DEPTH: 50x; reidplug's resnet50 also works.
    NAME: str = "build_resnet_backbone"
    DEPTH: str = "50x"
    LAST_STRIDE: int = 1
    FEAT_DIM: int = 2048
    NORM: str = "BN"
    WITH_IBN: bool = False
    WITH_SE: bool = False
    WITH_NL: bool = False
    # reidplug's: inner width of the non-local blocks. 0 is FastReID's (one channel, what its
    # released weights hold); r > 0 gives channels // r, the block of Wang et al. (r = 2).
    NL_REDUCTION: int = 0
    # Vision transformer (build_vit_backbone)
    SIE_COE: float = 3.0
    STRIDE_SIZE: list[int] = Factory(lambda: [16, 16])
    DROP_PATH_RATIO: float = 0.1
    DROP_RATIO: float = 0.0
    ATT_DROP_RATE: float = 0.0
    PRETRAIN: bool = False
    PRETRAIN_PATH: str = ""


@define(kw_only=True)
class HeadsCfg:
    NAME: str = "EmbeddingHead"
    NORM: str = "BN"
    NUM_CLASSES: int = 0
    EMBEDDING_DIM: int = 0
    WITH_BNNECK: bool = False
    NECK_FEAT: Literal["before", "after"] = "before"
    POOL_LAYER: str = "GlobalAvgPool"
    GEM_P: float = 3.0
    CLS_LAYER: str = "Linear"
    MARGIN: float = 0.0
    SCALE: float = 1.0


@define(kw_only=True)
class CECfg:
    EPSILON: float = 0.0
    ALPHA: float = 0.2
    SCALE: float = 1.0


@define(kw_only=True)
class TriCfg:
    MARGIN: float = 0.3
    NORM_FEAT: bool = False
    HARD_MINING: bool = False
    SCALE: float = 1.0


@define(kw_only=True)
class FocalCfg:
    ALPHA: float = 0.25
    GAMMA: float = 2.0
    SCALE: float = 1.0


@define(kw_only=True)
class PairCfg:
    MARGIN: float = 0.25
    GAMMA: float = 128.0
    SCALE: float = 1.0


@define(kw_only=True)
class LossesCfg:
    NAME: list[str] = Factory(lambda: ["CrossEntropyLoss"])
    CE: CECfg = Factory(CECfg)
    FL: FocalCfg = Factory(FocalCfg)
    TRI: TriCfg = Factory(TriCfg)
    CIRCLE: PairCfg = Factory(PairCfg)
    COSFACE: PairCfg = Factory(PairCfg)


@define(kw_only=True)
class ModelCfg:
    # FastReID's default is "cuda"; "auto" is cuda where there is one, so it agrees on a GPU
    # machine and still runs on a CPU-only one.
    DEVICE: str = "auto"
    META_ARCHITECTURE: str = "Baseline"
    FREEZE_LAYERS: list[str] = Factory(list)
    # MoCo memory size
    QUEUE_SIZE: int = 8192
    WEIGHTS: str = ""
    PIXEL_MEAN: list[float] = Factory(lambda: list(IMAGENET_MEAN))
    PIXEL_STD: list[float] = Factory(lambda: list(IMAGENET_STD))
    BACKBONE: BackboneCfg = Factory(BackboneCfg)
    HEADS: HeadsCfg = Factory(HeadsCfg)
    LOSSES: LossesCfg = Factory(LossesCfg)


@define(kw_only=True)
class EMACfg:
    ENABLED: bool = False
    MOMENTUM: float = 0.999


@define(kw_only=True)
class KDCfg:
    """Knowledge distillation (FastReID's Distiller)."""

    MODEL_CONFIG: list[str] = Factory(list)
    MODEL_WEIGHTS: list[str] = Factory(list)
    EMA: EMACfg = Factory(EMACfg)


@define(kw_only=True)
class CropCfg:
    ENABLED: bool = False
    SIZE: list[int] = Factory(lambda: [224, 224])
    SCALE: list[float] = Factory(lambda: [0.16, 1.0])
    RATIO: list[float] = Factory(lambda: [3.0 / 4.0, 4.0 / 3.0])


@define(kw_only=True)
class FlipCfg:
    ENABLED: bool = False
    PROB: float = 0.5


@define(kw_only=True)
class PaddingCfg:
    ENABLED: bool = False
    MODE: Literal["constant", "edge", "reflect", "symmetric"] = "constant"
    SIZE: int = 10


@define(kw_only=True)
class ColorJitterCfg:
    ENABLED: bool = False
    PROB: float = 0.5
    BRIGHTNESS: float = 0.15
    CONTRAST: float = 0.15
    SATURATION: float = 0.1
    HUE: float = 0.1


@define(kw_only=True)
class EnabledCfg:
    ENABLED: bool = False


@define(kw_only=True)
class ProbCfg:
    ENABLED: bool = False
    PROB: float = 0.0


@define(kw_only=True)
class REACfg:
    ENABLED: bool = False
    PROB: float = 0.5
    VALUE: list[float] = Factory(lambda: list(IMAGENET_MEAN))


@define(kw_only=True)
class RPTCfg:
    ENABLED: bool = False
    PROB: float = 0.5


@define(kw_only=True)
class InputCfg:
    SIZE_TRAIN: list[int] = Factory(lambda: [256, 128])
    SIZE_TEST: list[int] = Factory(lambda: [256, 128])
    CROP: CropCfg = Factory(CropCfg)
    FLIP: FlipCfg = Factory(FlipCfg)
    PADDING: PaddingCfg = Factory(PaddingCfg)
    CJ: ColorJitterCfg = Factory(ColorJitterCfg)
    AFFINE: EnabledCfg = Factory(EnabledCfg)
    AUTOAUG: ProbCfg = Factory(ProbCfg)
    AUGMIX: ProbCfg = Factory(ProbCfg)
    REA: REACfg = Factory(REACfg)
    RPT: RPTCfg = Factory(RPTCfg)


@define(kw_only=True)
class SynthCfg:
    IDS: int = 120
    CAMS: int = 6
    SEED: int = 0
    HEIGHT: int = 128
    WIDTH: int = 64
    CACHE_DIR: str = ""


@define(kw_only=True)
class DatasetsCfg:
    NAMES: list[str] = Factory(lambda: ["Market1501"])
    TESTS: list[str] = Factory(lambda: ["Market1501"])
    # Empty: $REIDPLUG_DATASETS, else ./datasets.
    ROOT: str = ""
    COMBINEALL: bool = False
    SYNTH: SynthCfg = Factory(SynthCfg)


@define(kw_only=True)
class DataloaderCfg:
    SAMPLER_TRAIN: str = "TrainingSampler"
    NUM_INSTANCE: int = 4
    NUM_WORKERS: int = 8
    # Per-dataset weights of a multi-dataset training set
    SET_WEIGHT: list[float] = Factory(list)
    CACHE_IMAGES: bool = False


@define(kw_only=True)
class AmpCfg:
    ENABLED: bool = False


@define(kw_only=True)
class ClipGradCfg:
    ENABLED: bool = False
    CLIP_TYPE: Literal["norm", "value"] = "norm"
    CLIP_VALUE: float = 5.0
    NORM_TYPE: float = 2.0


@define(kw_only=True)
class SolverCfg:
    AMP: AmpCfg = Factory(AmpCfg)
    # Empty: "amp" when AMP.ENABLED, else "fp32". Any registered trainer name works.
    TRAINER: str = ""
    OPT: str = "Adam"
    MAX_EPOCH: int = 120
    BASE_LR: float = 3e-4
    BIAS_LR_FACTOR: float = 1.0
    HEADS_LR_FACTOR: float = 1.0
    MOMENTUM: float = 0.9
    NESTEROV: bool = False
    WEIGHT_DECAY: float = 5e-4
    WEIGHT_DECAY_NORM: float = 5e-4
    WEIGHT_DECAY_BIAS: float = 5e-4
    IMS_PER_BATCH: int = 64
    SCHED: Literal["MultiStepLR", "CosineAnnealingLR"] = "MultiStepLR"
    STEPS: list[int] = Factory(lambda: [30, 55])
    GAMMA: float = 0.1
    DELAY_EPOCHS: int = 0
    ETA_MIN_LR: float = 1e-7
    WARMUP_FACTOR: float = 0.1
    WARMUP_ITERS: int = 1000
    # FastReID 1.x's warmup length in epochs (FastTune's search_trial.yml); > 0 replaces WARMUP_ITERS.
    WARMUP_EPOCHS: int = 0
    WARMUP_METHOD: Literal["linear", "constant"] = "linear"
    FREEZE_ITERS: int = 0
    CHECKPOINT_PERIOD: int = 20
    KEEP_LAST: int = 2
    CLIP_GRADIENTS: ClipGradCfg = Factory(ClipGradCfg)
    NAN_POLICY: Literal["skip", "abort"] = "skip"
    MAX_CONSECUTIVE_NAN: int = 20


@define(kw_only=True)
class AQECfg:
    ENABLED: bool = False
    QE_TIME: int = 1
    QE_K: int = 5
    ALPHA: float = 3.0


@define(kw_only=True)
class RerankCfg:
    ENABLED: bool = False
    K1: int = 20
    K2: int = 6
    LAMBDA: float = 0.3


@define(kw_only=True)
class PreciseBNCfg:
    ENABLED: bool = False
    DATASET: str = "Market1501"
    NUM_ITER: int = 300


@define(kw_only=True)
class TestFlipCfg:
    ENABLED: bool = False


@define(kw_only=True)
class TestCfg:
    EVAL_PERIOD: int = 20
    IMS_PER_BATCH: int = 64
    METRIC: Literal["cosine", "euclidean"] = "cosine"
    ROC: EnabledCfg = Factory(EnabledCfg)
    FLIP: TestFlipCfg = Factory(TestFlipCfg)
    AQE: AQECfg = Factory(AQECfg)
    RERANK: RerankCfg = Factory(RerankCfg)
    PRECISE_BN: PreciseBNCfg = Factory(PreciseBNCfg)


@define(kw_only=True)
class ResourcesCfg:
    CPU: float = 1.0
    GPU: float = 0.0
    # Data-parallel processes per trial on the CPU (gloo); with GPU >= 2, one per GPU instead.
    CPU_PROCESSES: int = 1


@define(kw_only=True)
class TuneCfg:
    # Empty: the config file's stem.
    NAME: str = ""
    # "reid" trains Re-ID models; also any registered trainable or a module:attr reference.
    TRAINABLE: str = "reid"
    METRIC: str = "score"
    MODE: Literal["max", "min"] = "max"
    NUM_TRIALS: int = 8
    TIME_BUDGET_S: float = 0.0
    MAX_CONCURRENT: int = 1
    RESOURCES_PER_TRIAL: ResourcesCfg = Factory(ResourcesCfg)
    STEP_EPOCHS: int = 1
    # 0: ceil(SOLVER.MAX_EPOCH / STEP_EPOCHS) for Re-ID trials.
    MAX_STEPS: int = 0
    MAX_FAILURES: int = 1
    CHECKPOINT_FREQ: int = 1
    KEEP_CHECKPOINTS: int = 1
    SEED: int = 0
    SEARCHER: str = "random"
    SCHEDULER: str = "fifo"
    EXECUTOR: str = "local"
    REPORTERS: list[str] = Factory(lambda: ["console", "jsonl", "csv"])
    STORAGE: str = ""
    POINTS_TO_EVALUATE: list[dict] = Factory(list)
    SPACE: dict = Factory(dict)
    # Options of searchers, schedulers, executors and reporters, by their upper-case
    # name (TUNE.ASHA, TUNE.PBT, ...). Each component validates its own section.
    PLUGINS: dict = Factory(dict)


@define(kw_only=True, slots=False)
class Config:
    MODEL: ModelCfg = Factory(ModelCfg)
    KD: KDCfg = Factory(KDCfg)
    INPUT: InputCfg = Factory(InputCfg)
    DATASETS: DatasetsCfg = Factory(DatasetsCfg)
    DATALOADER: DataloaderCfg = Factory(DataloaderCfg)
    SOLVER: SolverCfg = Factory(SolverCfg)
    TEST: TestCfg = Factory(TestCfg)
    TUNE: TuneCfg = Factory(TuneCfg)
    OUTPUT_DIR: str = "logs"
    SEED: int = 0
    CUDNN_BENCHMARK: bool = False
    DETERMINISTIC: bool = False
