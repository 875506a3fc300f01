"""Component options: typed by the algorithm, one path for every component, checked in use or not, resumable."""

from __future__ import annotations

import pytest
from fault_plugins import fault_site, with_fault_plugin  # noqa: F401  (fixtures)

from reidplug.core.errors import ConfigError
from reidplug.core.experiment import Experiment
from reidplug.plugins.schedulers.hyperband import hyperband_brackets


def _cfg(tmp_path, **tune):
    base = {"NAME": "exp", "TRAINABLE": "external", "NUM_TRIALS": 2, "MAX_STEPS": 9, "REPORTERS": [],
            "SPACE": {"x": {"uniform": [0.0, 1.0]}}}
    return {"OUTPUT_DIR": str(tmp_path), "TUNE": {**base, **tune}}


def test_a_float_eta_is_accepted_from_the_file_and_the_command_line(tmp_path):
    exp = Experiment(_cfg(tmp_path, SCHEDULER="hyperband", HYPERBAND={"ETA": 2.5}), dry_run=True)
    brackets = exp.scheduler.brackets
    assert exp.scheduler.eta == 2.5 and brackets[0]["ns"] == [6, 2, 1] and brackets[0]["steps"] == [1, 4, 9]
    assert [{k: b[k] for k in ("s", "ns", "budgets")} for b in brackets] == hyperband_brackets(1, 9, 2.5)
    exp = Experiment(_cfg(tmp_path, SCHEDULER="hyperband"), ["TUNE.HYPERBAND.ETA=2.5"], dry_run=True)
    assert exp.scheduler.eta == 2.5
    with pytest.raises(ConfigError, match=r"TUNE.HYPERBAND.MIN_BUDGET: expected an integer, got 1.5"):
        Experiment(_cfg(tmp_path, SCHEDULER="hyperband", HYPERBAND={"MIN_BUDGET": 1.5}), dry_run=True)


def test_sections_of_components_not_in_use_are_checked(with_fault_plugin, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match=r"TUNE.MEDIAN.GRACE_PERIOD: expected an integer, got \[1\]"):
        Experiment(_cfg(tmp_path, SCHEDULER="fifo"), ["TUNE.MEDIAN.GRACE_PERIOD=[1]"], dry_run=True)
    with pytest.raises(ConfigError, match=r"TUNE.ASHA.GRACE_PERIOD: expected an integer, got 'two'"):
        Experiment(_cfg(tmp_path, SCHEDULER="fifo", ASHA={"GRACE_PERIOD": "two"}), dry_run=True)
    with pytest.raises(ConfigError, match=r"TUNE.MEDIANN: unknown key \(did you mean 'TUNE.MEDIAN'\?\)"):
        Experiment(_cfg(tmp_path, MEDIANN={"GRACE_PERIOD": 2}), dry_run=True)


def test_an_alias_shares_its_components_section_which_the_component_is_told(with_fault_plugin, tmp_path):  # noqa: F811
    exp = Experiment(_cfg(tmp_path, SCHEDULER="median_stopping", MEDIAN={"GRACE_PERIOD": 2}), dry_run=True)
    assert exp.scheduler.section == "TUNE.MEDIAN"
    with pytest.raises(ConfigError, match=r"TUNE.MEDIAN.GRACE_PERIOD: must be at least 1, got 0"):
        Experiment(_cfg(tmp_path, SCHEDULER="median_stopping", MEDIAN={"GRACE_PERIOD": 0}), dry_run=True)
    with pytest.raises(ConfigError, match=r"TUNE.MEDIAN_STOPPING: 'median_stopping' is another name of 'median', "
                                          r"whose options go in TUNE.MEDIAN"):
        Experiment(_cfg(tmp_path, SCHEDULER="median_stopping", MEDIAN_STOPPING={"GRACE_PERIOD": 2}), dry_run=True)


def _run(exp, trials: int) -> None:
    for _ in range(trials):
        trial = exp.ask()
        while exp.tell(trial, {"score": trial.params["x"]}) == "CONTINUE":
            pass


def test_a_third_party_reporters_options_change_on_resume_and_a_searchers_declared_ones(with_fault_plugin,  # noqa: F811
                                                                                        tmp_path):
    cfg = _cfg(tmp_path, NUM_TRIALS=2, MAX_STEPS=1, SEARCHER="faulty", REPORTERS=["notes"], NOTES={"PREFIX": "first"})
    exp = Experiment(cfg)
    _run(exp, 1)
    exp.close()  # stopped after one trial
    again = Experiment(cfg, ["TUNE.NOTES.PREFIX=second", "TUNE.FAULTY.VERBOSE=true"], resume=True)
    _run(again, 1)
    again.finish()
    assert (tmp_path / "exp" / "notes.txt").read_text() == "first 1 TUNE.NOTES\nsecond 2 TUNE.NOTES\n"
    # SHIFT changes the points the searcher proposes; the searcher does not list it as resumable.
    with pytest.raises(ConfigError, match=r"TUNE.FAULTY.SHIFT: changed since the experiment started"):
        Experiment(cfg, ["TUNE.FAULTY.SHIFT=0.1"], resume=True)
