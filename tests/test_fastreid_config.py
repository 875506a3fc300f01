"""FastReID's config files as FastReID reads them: its defaults, its tuple strings, its keys honoured or refused."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch
import yaml

from reidplug.cli import main
from reidplug.core.config import get_dotted, load_config, schema_keys
from reidplug.core.errors import ConfigError, UserError
from reidplug.core.fastreid_keys import HONOURED, NOT_IMPLEMENTED
from reidplug.core.hookspecs import hookimpl
from reidplug.core.validate import validate

# FastReID's fastreid/config/defaults.py at its HEAD, flattened: every key and its value.
FASTREID_DEFAULTS = {
    "MODEL.DEVICE": "cuda", "MODEL.META_ARCHITECTURE": "Baseline", "MODEL.FREEZE_LAYERS": [],
    "MODEL.QUEUE_SIZE": 8192,
    "MODEL.BACKBONE.NAME": "build_resnet_backbone", "MODEL.BACKBONE.DEPTH": "50x", "MODEL.BACKBONE.LAST_STRIDE": 1,
    "MODEL.BACKBONE.FEAT_DIM": 2048, "MODEL.BACKBONE.NORM": "BN", "MODEL.BACKBONE.WITH_IBN": False,
    "MODEL.BACKBONE.WITH_SE": False, "MODEL.BACKBONE.WITH_NL": False, "MODEL.BACKBONE.SIE_COE": 3.0,
    "MODEL.BACKBONE.STRIDE_SIZE": [16, 16], "MODEL.BACKBONE.DROP_PATH_RATIO": 0.1, "MODEL.BACKBONE.DROP_RATIO": 0.0,
    "MODEL.BACKBONE.ATT_DROP_RATE": 0.0, "MODEL.BACKBONE.PRETRAIN": False, "MODEL.BACKBONE.PRETRAIN_PATH": "",
    "MODEL.HEADS.NAME": "EmbeddingHead", "MODEL.HEADS.NORM": "BN", "MODEL.HEADS.NUM_CLASSES": 0,
    "MODEL.HEADS.EMBEDDING_DIM": 0, "MODEL.HEADS.WITH_BNNECK": False, "MODEL.HEADS.NECK_FEAT": "before",
    "MODEL.HEADS.POOL_LAYER": "GlobalAvgPool", "MODEL.HEADS.CLS_LAYER": "Linear", "MODEL.HEADS.MARGIN": 0.0,
    "MODEL.HEADS.SCALE": 1,
    "MODEL.LOSSES.NAME": ["CrossEntropyLoss"], "MODEL.LOSSES.CE.EPSILON": 0.0, "MODEL.LOSSES.CE.ALPHA": 0.2,
    "MODEL.LOSSES.CE.SCALE": 1.0, "MODEL.LOSSES.FL.ALPHA": 0.25, "MODEL.LOSSES.FL.GAMMA": 2,
    "MODEL.LOSSES.FL.SCALE": 1.0, "MODEL.LOSSES.TRI.MARGIN": 0.3, "MODEL.LOSSES.TRI.NORM_FEAT": False,
    "MODEL.LOSSES.TRI.HARD_MINING": False, "MODEL.LOSSES.TRI.SCALE": 1.0, "MODEL.LOSSES.CIRCLE.MARGIN": 0.25,
    "MODEL.LOSSES.CIRCLE.GAMMA": 128, "MODEL.LOSSES.CIRCLE.SCALE": 1.0, "MODEL.LOSSES.COSFACE.MARGIN": 0.25,
    "MODEL.LOSSES.COSFACE.GAMMA": 128, "MODEL.LOSSES.COSFACE.SCALE": 1.0,
    "MODEL.WEIGHTS": "", "MODEL.PIXEL_MEAN": [0.485 * 255, 0.456 * 255, 0.406 * 255],
    "MODEL.PIXEL_STD": [0.229 * 255, 0.224 * 255, 0.225 * 255],
    "KD.MODEL_CONFIG": [], "KD.MODEL_WEIGHTS": [], "KD.EMA.ENABLED": False, "KD.EMA.MOMENTUM": 0.999,
    "INPUT.SIZE_TRAIN": [256, 128], "INPUT.SIZE_TEST": [256, 128], "INPUT.CROP.ENABLED": False,
    "INPUT.CROP.SIZE": [224, 224], "INPUT.CROP.SCALE": [0.16, 1], "INPUT.CROP.RATIO": [3.0 / 4.0, 4.0 / 3.0],
    "INPUT.FLIP.ENABLED": False, "INPUT.FLIP.PROB": 0.5, "INPUT.PADDING.ENABLED": False,
    "INPUT.PADDING.MODE": "constant", "INPUT.PADDING.SIZE": 10, "INPUT.CJ.ENABLED": False, "INPUT.CJ.PROB": 0.5,
    "INPUT.CJ.BRIGHTNESS": 0.15, "INPUT.CJ.CONTRAST": 0.15, "INPUT.CJ.SATURATION": 0.1, "INPUT.CJ.HUE": 0.1,
    "INPUT.AFFINE.ENABLED": False, "INPUT.AUTOAUG.ENABLED": False, "INPUT.AUTOAUG.PROB": 0.0,
    "INPUT.AUGMIX.ENABLED": False, "INPUT.AUGMIX.PROB": 0.0, "INPUT.REA.ENABLED": False, "INPUT.REA.PROB": 0.5,
    "INPUT.REA.VALUE": [0.485 * 255, 0.456 * 255, 0.406 * 255], "INPUT.RPT.ENABLED": False, "INPUT.RPT.PROB": 0.5,
    "DATASETS.NAMES": ["Market1501"], "DATASETS.TESTS": ["Market1501"], "DATASETS.COMBINEALL": False,
    "DATALOADER.SAMPLER_TRAIN": "TrainingSampler", "DATALOADER.NUM_INSTANCE": 4, "DATALOADER.NUM_WORKERS": 8,
    "DATALOADER.SET_WEIGHT": [],
    "SOLVER.AMP.ENABLED": False, "SOLVER.OPT": "Adam", "SOLVER.MAX_EPOCH": 120, "SOLVER.BASE_LR": 3e-4,
    "SOLVER.HEADS_LR_FACTOR": 1.0, "SOLVER.MOMENTUM": 0.9, "SOLVER.NESTEROV": False, "SOLVER.WEIGHT_DECAY": 0.0005,
    "SOLVER.WEIGHT_DECAY_NORM": 0.0005, "SOLVER.BIAS_LR_FACTOR": 1.0, "SOLVER.WEIGHT_DECAY_BIAS": 0.0005,
    "SOLVER.SCHED": "MultiStepLR", "SOLVER.DELAY_EPOCHS": 0, "SOLVER.GAMMA": 0.1, "SOLVER.STEPS": [30, 55],
    "SOLVER.ETA_MIN_LR": 1e-7, "SOLVER.WARMUP_FACTOR": 0.1, "SOLVER.WARMUP_ITERS": 1000,
    "SOLVER.WARMUP_METHOD": "linear", "SOLVER.FREEZE_ITERS": 0, "SOLVER.CHECKPOINT_PERIOD": 20,
    "SOLVER.IMS_PER_BATCH": 64, "SOLVER.CLIP_GRADIENTS.ENABLED": False, "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "norm",
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 5.0, "SOLVER.CLIP_GRADIENTS.NORM_TYPE": 2.0,
    "TEST.EVAL_PERIOD": 20, "TEST.IMS_PER_BATCH": 64, "TEST.METRIC": "cosine", "TEST.ROC.ENABLED": False,
    "TEST.FLIP.ENABLED": False, "TEST.AQE.ENABLED": False, "TEST.AQE.ALPHA": 3.0, "TEST.AQE.QE_TIME": 1,
    "TEST.AQE.QE_K": 5, "TEST.RERANK.ENABLED": False, "TEST.RERANK.K1": 20, "TEST.RERANK.K2": 6,
    "TEST.RERANK.LAMBDA": 0.3, "TEST.PRECISE_BN.ENABLED": False, "TEST.PRECISE_BN.DATASET": "Market1501",
    "TEST.PRECISE_BN.NUM_ITER": 300,
    "OUTPUT_DIR": "logs/", "CUDNN_BENCHMARK": False,
}
# Where reidplug's default deliberately differs (docs/fastreid.md says why).
DIFFERENT = {"MODEL.DEVICE": "auto", "OUTPUT_DIR": "logs"}


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def same(a, b) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return not isinstance(b, bool) and math.isclose(a, b, rel_tol=1e-9)
    return a == b and type(a) is type(b)


def test_every_fastreid_key_has_fastreid_default():
    cfg, keys = load_config(None), schema_keys()
    missing = [k for k in FASTREID_DEFAULTS if k not in keys]
    assert not missing
    wrong = {k: get_dotted(cfg, k) for k, v in FASTREID_DEFAULTS.items()
             if not same(v, get_dotted(cfg, k)) and k not in DIFFERENT}
    assert not wrong
    assert {k: get_dotted(cfg, k) for k in DIFFERENT} == DIFFERENT


def test_each_fastreid_key_is_honoured_or_refused_and_nothing_else():
    assert not HONOURED & set(NOT_IMPLEMENTED)
    assert HONOURED | set(NOT_IMPLEMENTED) == set(FASTREID_DEFAULTS)


def test_tuple_and_list_strings_are_read_as_lists(tmp_path):
    path = write(tmp_path / "fr.yml", """\
        MODEL:
          LOSSES:
            NAME: ("CrossEntropyLoss", "TripletLoss",)
          BACKBONE:
            STRIDE_SIZE: (12, 12)
          FREEZE_LAYERS: ['backbone']
        DATASETS:
          NAMES: ("Market1501",)
          TESTS: ("Market1501", "DukeMTMC")
        INPUT:
          SIZE_TRAIN: [ 256, 128 ]
          SIZE_TEST: "[384, 128]"
        """)
    cfg = load_config(path, ['DATASETS.NAMES=("DukeMTMC",)', "SOLVER.STEPS=(10, 20)"])
    assert cfg.MODEL.LOSSES.NAME == ["CrossEntropyLoss", "TripletLoss"]
    assert cfg.MODEL.BACKBONE.STRIDE_SIZE == [12, 12] and cfg.MODEL.FREEZE_LAYERS == ["backbone"]
    assert cfg.DATASETS.NAMES == ["DukeMTMC"] and cfg.DATASETS.TESTS == ["Market1501", "DukeMTMC"]
    assert cfg.INPUT.SIZE_TRAIN == [256, 128] and cfg.INPUT.SIZE_TEST == [384, 128]
    assert cfg.SOLVER.STEPS == [10, 20]


@pytest.mark.parametrize("text", [
    '(__import__("os").system("touch PWNED"),)',
    "(open('x'),)",
    "(1, {2: 3})",
    "(lambda: 1,)",
])
def test_literals_are_never_evaluated(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.yml"
    path.write_text(yaml.safe_dump({"DATASETS": {"NAMES": text}}))
    with pytest.raises(ConfigError, match="DATASETS.NAMES: expected a list"):
        load_config(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_bare_parenthesised_name_stays_a_string_and_the_error_says_so(tmp_path):
    path = write(tmp_path / "fr.yml", 'DATASETS:\n  NAMES: ("Market1501")\n')
    with pytest.raises(ConfigError, match="expected a list"):
        load_config(path)


@pytest.mark.parametrize("override,key", [
    ("INPUT.CROP.ENABLED=true", "INPUT.CROP.ENABLED"),
    ("MODEL.QUEUE_SIZE=4096", "MODEL.QUEUE_SIZE"),
    ("KD.MODEL_CONFIG=[teacher.yml]", "KD.MODEL_CONFIG"),
    ("MODEL.LOSSES.FL.GAMMA=3", "MODEL.LOSSES.FL.GAMMA"),
    ("TEST.ROC.ENABLED=true", "TEST.ROC.ENABLED"),
])
def test_unimplemented_fastreid_key_is_refused_on_one_line(tmp_path, capsys, override, key):
    path = write(tmp_path / "fr.yml", "SOLVER:\n  MAX_EPOCH: 2\n")
    with pytest.raises(SystemExit) as info:
        main(["config", "validate", str(path), override])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: <command line>: {key}: a FastReID key reidplug does not implement")


def test_refusal_names_the_file_and_spelled_out_defaults_are_accepted(tmp_path):
    bad = write(tmp_path / "aug.yml", "INPUT:\n  AUGMIX:\n    ENABLED: True\n    PROB: 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.file == str(bad) and info.value.key == "INPUT.AUGMIX.ENABLED"
    # FastReID's own values ask for nothing, and a disabled feature's options do nothing there either.
    fine = write(tmp_path / "fine.yml", """\
        MODEL:
          QUEUE_SIZE: 8192
          BACKBONE:
            WITH_SE: False
        KD:
          EMA:
            ENABLED: False
            MOMENTUM: 0.5
        INPUT:
          CROP:
            ENABLED: False
            SIZE: [128, 64]
        TEST:
          PRECISE_BN:
            DATASET: DukeMTMC
        """)
    load_config(fine)
    with pytest.raises(ConfigError, match="TEST.PRECISE_BN.DATASET"):
        load_config(fine, ["TEST.PRECISE_BN.ENABLED=true"])
    load_config(fine, ["TEST.PRECISE_BN.ENABLED=true", "DATASETS.NAMES=[DukeMTMC]"])


def test_command_line_values_are_blamed_on_the_command_line(tmp_path):
    base = write(tmp_path / "base.yml", "SOLVER:\n  STEPS: [3, x]\n")
    child = write(tmp_path / "child.yml", "_BASE_: base.yml\nINPUT:\n  REA:\n    ENABLED: true\n    PROB: 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    assert info.value.file == str(base) and info.value.key == "SOLVER.STEPS[1]"  # a list item: its list's file
    cases = [
        (["SOLVER.STEPS=[3, y]"], "SOLVER.STEPS[1]"),
        (["SOLVER.STEPS=[3]", "SOLVER.BASE_LR=fast"], "SOLVER.BASE_LR"),
        (["SOLVER.STEPS=[3]", "INPUT.REA={ENABLED: true, PROB: 2}"], "INPUT.REA.PROB"),  # a section set whole
    ]
    for overrides, key in cases:
        with pytest.raises(ConfigError) as info:
            load_config(child, overrides)
        assert (info.value.file, info.value.key) == ("<command line>", key)
    with pytest.raises(ConfigError) as info:
        load_config(child, ["SOLVER.STEPS=[3]", "INPUT.REA.ENABLED=3"])
    assert (info.value.file, info.value.key) == ("<command line>", "INPUT.REA.ENABLED")
    fine = load_config(child, ["SOLVER.STEPS=[3]"])
    assert fine.origins.of("INPUT.REA.PROB") == str(child)


def test_project_configs_keep_their_recipe_over_fastreid_defaults():
    quick = load_config("configs/synthetic/quick.yml")
    assert quick.MODEL.HEADS.WITH_BNNECK and quick.MODEL.LOSSES.NAME == ["CrossEntropyLoss", "TripletLoss"]
    assert quick.MODEL.LOSSES.TRI.HARD_MINING and quick.MODEL.LOSSES.CE.EPSILON == pytest.approx(0.1)
    assert quick.INPUT.FLIP.ENABLED and quick.INPUT.PADDING.ENABLED and quick.INPUT.REA.ENABLED
    assert quick.DATALOADER.SAMPLER_TRAIN == "NaiveIdentitySampler" and not quick.SOLVER.AMP.ENABLED
    assert quick.SOLVER.STEPS == [20, 27] and quick.SOLVER.WARMUP_ITERS == 50
    asha = load_config("configs/tune/asha.yml")
    assert asha.SOLVER.STEPS == [40, 90] and asha.SOLVER.AMP.ENABLED and asha.MODEL.HEADS.WITH_BNNECK


# ------------------------------------------------------------------ validate resolves every name


@pytest.mark.parametrize("override,key", [
    ("MODEL.META_ARCHITECTURE=MoCo", "MODEL.META_ARCHITECTURE"),
    ("MODEL.BACKBONE.NAME=build_mobilenetv2_backbone", "MODEL.BACKBONE.NAME"),
    ("MODEL.HEADS.NAME=ClasHead", "MODEL.HEADS.NAME"),
    ("MODEL.HEADS.POOL_LAYER=AdaptiveAvgMaxPool", "MODEL.HEADS.POOL_LAYER"),
    ("MODEL.HEADS.CLS_LAYER=AmSoftmax", "MODEL.HEADS.CLS_LAYER"),
    ("MODEL.LOSSES.NAME=[CrossEntropyLoss, FocalLoss]", "MODEL.LOSSES.NAME"),
    ("DATASETS.TESTS=[CUHK03]", "DATASETS.TESTS"),
    ("DATALOADER.SAMPLER_TRAIN=SetReWeightSampler", "DATALOADER.SAMPLER_TRAIN"),
    ("SOLVER.OPT=Lamb", "SOLVER.OPT"),
    ("MODEL.BACKBONE.DEPTH=77x", "MODEL.BACKBONE.DEPTH"),  # caught by the builder itself
])
def test_validate_resolves_every_component_name(override, key):
    with pytest.raises(UserError) as info:
        validate("configs/synthetic/quick.yml", ["MODEL.BACKBONE.NAME=build_resnet_backbone",
                                                 "MODEL.BACKBONE.DEPTH=18x", override])
    assert str(info.value).startswith(f"<command line>: {key}: ")


class _ExtraParts:
    @hookimpl
    def register_backbones(self, register):
        register("tiny_extra", _tiny_backbone)


def _tiny_backbone(bcfg):
    net = torch.nn.Conv2d(3, 8, 3)
    net.out_channels = 8
    return net


def test_validate_sees_names_a_plugin_adds():
    from reidplug.core import manager
    from reidplug.core.manager import plugin_manager

    with pytest.raises(UserError, match="unknown backbone 'tiny_extra'"):
        validate("configs/synthetic/quick.yml", ["MODEL.BACKBONE.NAME=tiny_extra"])
    manager.reset_plugin_manager()
    plugin_manager().register(_ExtraParts(), name="extra-parts")
    notes = validate("configs/synthetic/quick.yml", ["MODEL.BACKBONE.NAME=tiny_extra"])
    assert any("tiny_extra" in n for n in notes)
