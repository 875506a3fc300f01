"""Config loading: _BASE_ inheritance, overrides, schema checks and their errors."""

from __future__ import annotations

import textwrap

import pytest

from reidplug.core.config import load_config, to_yaml, unstructure, with_params
from reidplug.core.errors import ConfigError


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_base_bagtricks_spells_the_bag_of_tricks_over_fastreid_defaults():
    # The defaults are FastReID's defaults.py (tests/test_fastreid_config.py); the recipe file says what BoT changes.
    cfg = load_config("configs/Base-bagtricks.yml")
    assert cfg.SOLVER.BASE_LR == pytest.approx(3.5e-4)
    assert cfg.SOLVER.IMS_PER_BATCH == 64 and cfg.DATALOADER.NUM_INSTANCE == 4
    assert cfg.SOLVER.STEPS == [40, 90] and cfg.SOLVER.WARMUP_ITERS == 2000
    assert cfg.MODEL.LOSSES.CE.EPSILON == pytest.approx(0.1) and cfg.MODEL.LOSSES.TRI.MARGIN == pytest.approx(0.3)
    assert cfg.MODEL.LOSSES.TRI.HARD_MINING and cfg.MODEL.LOSSES.NAME == ["CrossEntropyLoss", "TripletLoss"]
    assert cfg.MODEL.BACKBONE.LAST_STRIDE == 1 and cfg.MODEL.HEADS.WITH_BNNECK
    assert cfg.INPUT.FLIP.ENABLED and cfg.INPUT.PADDING.ENABLED and cfg.INPUT.REA.ENABLED
    assert cfg.DATALOADER.SAMPLER_TRAIN == "NaiveIdentitySampler"
    assert cfg.INPUT.SIZE_TRAIN == [256, 128] and cfg.SOLVER.AMP.ENABLED


def test_base_inheritance_is_recursive_and_relative(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "root.yml", "SOLVER:\n  BASE_LR: 0.1\n  MAX_EPOCH: 10\nMODEL:\n  BACKBONE:\n    NAME: resnet18\n")
    write(tmp_path / "sub" / "mid.yml", "_BASE_: ../root.yml\nSOLVER:\n  MAX_EPOCH: 20\n")
    leaf = write(tmp_path / "sub" / "leaf.yml", "_BASE_: mid.yml\nSOLVER:\n  GAMMA: 0.5\n")
    cfg = load_config(leaf)
    assert cfg.SOLVER.BASE_LR == 0.1 and cfg.SOLVER.MAX_EPOCH == 20 and cfg.SOLVER.GAMMA == 0.5
    assert cfg.MODEL.BACKBONE.NAME == "resnet18"
    assert cfg.origins.of("SOLVER.MAX_EPOCH").endswith("mid.yml")
    assert cfg.origins.of("SOLVER.BASE_LR").endswith("root.yml")


def test_base_cycle_is_detected(tmp_path):
    write(tmp_path / "a.yml", "_BASE_: b.yml\n")
    write(tmp_path / "b.yml", "_BASE_: a.yml\n")
    with pytest.raises(ConfigError, match=r"_BASE_: inheritance cycle: a.yml -> b.yml -> a.yml"):
        load_config(tmp_path / "a.yml")


def test_missing_base_names_file_and_key(tmp_path):
    cfg = write(tmp_path / "a.yml", "_BASE_: nowhere.yml\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value).startswith(f"{cfg}: _BASE_: base config 'nowhere.yml' not found")


def test_overrides_are_typed_and_win(tmp_path):
    cfg_file = write(tmp_path / "a.yml", "SOLVER:\n  BASE_LR: 0.1\n")
    cfg = load_config(cfg_file, ["SOLVER.BASE_LR=0.001", "MODEL.BACKBONE.NAME=resnet18", "SOLVER.STEPS=[5, 8]",
                                 "SOLVER.AMP=false"])
    assert cfg.SOLVER.BASE_LR == 0.001 and cfg.MODEL.BACKBONE.NAME == "resnet18"
    assert cfg.SOLVER.STEPS == [5, 8] and cfg.SOLVER.AMP.ENABLED is False
    assert cfg.origins.of("SOLVER.BASE_LR") == "<command line>"


def test_bare_bool_section_and_float_strings():
    cfg = load_config({"SOLVER": {"AMP": False, "BASE_LR": "1e-3"}})
    assert cfg.SOLVER.AMP.ENABLED is False and cfg.SOLVER.BASE_LR == 1e-3


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        ("SOLVER:\n  BASE_LRR: 0.1\n", "SOLVER.BASE_LRR", "did you mean 'BASE_LR'"),
        ("SOLVER:\n  BASE_LR: fast\n", "SOLVER.BASE_LR", "expected a number"),
        ("SOLVER:\n  MAX_EPOCH: 1.5\n", "SOLVER.MAX_EPOCH", "expected an integer"),
        ("SOLVER:\n  SCHED: Linear\n", "SOLVER.SCHED", "must be one of"),
        ("DATALOADER:\n  SAMPLER_TRAIN: NaiveIdentitySampler\nSOLVER:\n  IMS_PER_BATCH: 30\n", "SOLVER.IMS_PER_BATCH",
         "not divisible by DATALOADER.NUM_INSTANCE=4"),
        ("SOLVER:\n  BASE_LR: -1\n", "SOLVER.BASE_LR", "must be positive"),
        ("INPUT:\n  SIZE_TRAIN: [256]\n", "INPUT.SIZE_TRAIN", "[height, width]"),
        ("TUNE:\n  MODE: maximum\n", "TUNE.MODE", "must be one of"),
        ("SOLVER: 3\n", "SOLVER", "expected a mapping"),
        ("MODEL:\n  LOSSES:\n    NAME: TripletLoss\n", "MODEL.LOSSES.NAME", "expected a list"),
    ],
)
def test_each_config_error_names_file_and_key(tmp_path, text, key, fragment):
    path = write(tmp_path / "bad.yml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert fragment in msg
    assert "\n" not in msg


def test_malformed_yaml_names_line(tmp_path):
    path = write(tmp_path / "bad.yml", "SOLVER:\n  BASE_LR: [0.1\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: line \d+, column \d+"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path / "list.yml", "- 1\n- 2\n"))


def test_unknown_override_key_suggests(tmp_path):
    with pytest.raises(ConfigError, match=r"<command line>: SOLVER.BASELR: unknown key \(did you mean 'BASE_LR'\?\)"):
        load_config(None, ["SOLVER.BASELR=0.1"])
    with pytest.raises(ConfigError, match="is not KEY.PATH=VALUE"):
        load_config(None, ["SOLVER.BASE_LR"])


def test_missing_file():
    with pytest.raises(ConfigError, match="nope.yml: no such file"):
        load_config("nope.yml")


def test_yaml_round_trip_and_with_params():
    cfg = load_config(None, ["TUNE.ASHA.GRACE_PERIOD=2", "DATALOADER.SAMPLER_TRAIN=NaiveIdentitySampler"])
    again = load_config(__import__("yaml").safe_load(to_yaml(cfg)))
    assert unstructure(again) == unstructure(cfg)
    assert again.TUNE.PLUGINS == {"ASHA": {"GRACE_PERIOD": 2}}
    tuned = with_params(cfg, {"SOLVER.BASE_LR": 0.01, "DATALOADER.NUM_INSTANCE": 8})
    assert tuned.SOLVER.BASE_LR == 0.01 and tuned.DATALOADER.NUM_INSTANCE == 8
    with pytest.raises(ConfigError, match="not divisible"):
        with_params(cfg, {"DATALOADER.NUM_INSTANCE": 6})


def test_flat_parameter_yaml_reads_back_exactly():
    import math
    import random

    import yaml

    from reidplug.core.config import _flat_yaml, to_yaml

    rng = random.Random(0)
    values = [1e-05, 2, True, False, None, 1.5, 1e20, -3.25e-300, math.inf, -math.inf, 5e-324, -0.0, "Adam", "x-y.z"]
    values += [10 ** rng.uniform(-300, 300) * rng.choice([-1, 1]) for _ in range(2000)]
    values += [rng.randint(-10**12, 10**12) for _ in range(200)]
    data = {f"k{i}": v for i, v in enumerate(values)}
    text = _flat_yaml(data)
    assert text is not None
    back = yaml.safe_load(text)
    for key, value in data.items():
        assert back[key] == value and type(back[key]) is type(value), (key, value, back[key])
    assert math.isnan(yaml.safe_load(to_yaml({"x": math.nan}))["x"])
    # Strings YAML would read as something else take the general path, quoted.
    for word in ("yes", "Null", "12", "1e5", ".inf", "0x1F", "a b"):
        assert _flat_yaml({"s": word}) is None
        assert yaml.safe_load(to_yaml({"s": word})) == {"s": word}
