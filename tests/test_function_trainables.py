"""Function trainables `train(config, report)`: what `config` is, how many steps, where the module is found."""

from __future__ import annotations

import csv

import pytest

from reidplug.core.config import load_config, unstructure
from reidplug.core.errors import ConfigError
from reidplug.core.experiment import Experiment
from reidplug.core.trainable import TrialConfig, TrialContext
from reidplug.core.tuner import Tuner

SIX_STEPS = """
def train(config, report):
    for step in range(1, 7):
        report(score=config["x"] + step, lr=config.SOLVER.BASE_LR, metric_is_score=config.TUNE.METRIC == "score",
               trial=config.trial_id)
"""


def test_a_function_runs_until_it_returns_with_the_merged_config(tmp_path, monkeypatch):
    # The module is in the current folder, which is not on PYTHONPATH.
    (tmp_path / "six_steps.py").write_text(SIX_STEPS)
    monkeypatch.chdir(tmp_path)
    cfg = {"OUTPUT_DIR": str(tmp_path / "out"), "SOLVER": {"BASE_LR": 0.5},
           "TUNE": {"NAME": "exp", "TRAINABLE": "six_steps:train", "NUM_TRIALS": 2, "REPORTERS": [],
                    "SPACE": {"x": {"uniform": [0.0, 1.0]}, "SOLVER.BASE_LR": {"choice": [0.01, 0.02]}}}}
    summary = Tuner(cfg).run()
    assert summary["status"] == {"TERMINATED": 2}
    with open(tmp_path / "out" / "exp" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # MAX_STEPS 0: all six steps, not one
        assert row["step"] == "6" and row["metric_is_score"] == "True" and row["trial"] == row["trial_id"]
        assert float(row["lr"]) == float(row["param:SOLVER.BASE_LR"])  # a sampled config key, applied


def test_trial_config_is_the_params_by_name_and_the_config_by_attribute():
    base = unstructure(load_config({"SOLVER": {"BASE_LR": 0.5}, "TUNE": {"METRIC": "acc"}}))
    context = TrialContext(trial_id=7, trial_dir="/tmp/t7", experiment_dir="/tmp", base_config=base, max_steps=0)
    config = TrialConfig({"x": 0.25, "SOLVER.WEIGHT_DECAY": 0.01}, context)
    assert config["x"] == 0.25 and dict(config) == {"x": 0.25, "SOLVER.WEIGHT_DECAY": 0.01}
    assert config.SOLVER.BASE_LR == 0.5 and config.SOLVER.WEIGHT_DECAY == 0.01 and config.TUNE.METRIC == "acc"
    assert config.trial_id == 7 and config.trial_dir == "/tmp/t7" and config.max_steps == 0
    with pytest.raises(AttributeError, match=r"the sampled parameters are config\[name\]"):
        config.lr


def test_a_module_that_cannot_be_imported_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "s.yml").write_text("TUNE: {TRAINABLE: 'nowhere:train', SPACE: {x: {uniform: [0, 1]}}}\n")
    with pytest.raises(ConfigError) as info:
        Experiment(str(tmp_path / "conf" / "s.yml"), dry_run=True)
    assert str(info.value) == (
        f"{tmp_path / 'conf' / 's.yml'}: TUNE.TRAINABLE: cannot import module 'nowhere': no nowhere.py in "
        f"{tmp_path / 'conf'} or {tmp_path} nor in the installed packages")
    (tmp_path / "conf" / "broken.py").write_text("import rp_not_installed_anywhere\n")
    with pytest.raises(ConfigError, match=r"TUNE.TRAINABLE: importing 'broken' failed: ModuleNotFoundError: "
                                          r"No module named 'rp_not_installed_anywhere'$"):
        Experiment(str(tmp_path / "conf" / "s.yml"), ["TUNE.TRAINABLE=broken:train"], dry_run=True)


def test_a_scheduler_that_allots_steps_needs_max_steps_for_a_function(tmp_path):
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {"TRAINABLE": "trainables_for_tests:quadratic", "SCHEDULER": "asha",
                                                 "SPACE": {"x": {"uniform": [0.0, 1.0]}}}}
    with pytest.raises(ConfigError, match=r"TUNE.MAX_STEPS: 0 runs a function trainable until it returns, but "
                                          r"scheduler 'asha' allots steps"):
        Experiment(cfg, dry_run=True)
    assert Experiment(cfg, ["TUNE.MAX_STEPS=3"], dry_run=True).max_steps == 3
