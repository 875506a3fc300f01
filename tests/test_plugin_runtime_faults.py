"""A third-party plugin's component that fails at run time: one line naming it, results kept, resumable."""

from __future__ import annotations

import csv
import json
import os

import pytest
from conftest import run_cli
from fault_plugins import fault_site, with_fault_plugin  # noqa: F401  (fixtures)

from reidplug.core.experiment import Experiment
from reidplug.core.plugin_faults import PluginFault
from reidplug.core.trial import TrialStatus

TOY = """
def train(config, report):
    for step in range(1, 4):
        report(score=config["x"] + step)
"""


def _rows(folder):
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_searcher_fault_is_one_line_keeps_the_results_and_resumes(fault_site, tmp_path):  # noqa: F811
    # The trainable sits next to the config, not on PYTHONPATH: the config's folder is searched.
    (tmp_path / "toy.py").write_text(TOY)
    (tmp_path / "search.yml").write_text(
        f"OUTPUT_DIR: {tmp_path / 'out'}\n"
        "TUNE: {NAME: exp, TRAINABLE: 'toy:train', SEARCHER: faulty, NUM_TRIALS: 4, REPORTERS: [jsonl],\n"
        "       SPACE: {x: {uniform: [0, 1]}}}\n"
    )
    env = {"PYTHONPATH": str(fault_site), "RP_FAULT_AT": "3"}
    proc = run_cli("run", tmp_path / "search.yml", "--no-report", env_extra=env, cwd=str(fault_site))
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("error: searcher 'faulty' of plugin 'faults' (distribution rp-faults 1.2.3) "
                                "failed in _suggest(): RuntimeError: no point for trial 3"), errors[0]
    assert "reidplug resume" in errors[0]
    folder = tmp_path / "out" / "exp"
    assert [r["status"] for r in _rows(folder)] == ["TERMINATED", "TERMINATED"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["stopped_reason"] == "plugin fault: searcher faulty"
    assert "RuntimeError: no point for trial 3" in (folder / "plugin_error.txt").read_text()

    env["RP_FAULT_AT"] = "0"  # the plugin is fixed
    proc = run_cli("resume", folder, "--no-report", env_extra=env, cwd=str(fault_site))
    assert proc.returncode == 0, proc.stderr
    rows = _rows(folder)
    assert [r["status"] for r in rows] == ["TERMINATED"] * 4 and [r["step"] for r in rows] == ["3"] * 4


def _cfg(tmp_path, **tune):
    base = {"NAME": "exp", "TRAINABLE": "external", "NUM_TRIALS": 3, "MAX_STEPS": 3, "REPORTERS": [],
            "SPACE": {"x": {"uniform": [0.0, 1.0]}}}
    return {"OUTPUT_DIR": str(tmp_path), "TUNE": {**base, **tune}}


def test_scheduler_fault_names_the_plugin_and_the_journal_keeps_the_last_good_state(with_fault_plugin, tmp_path,  # noqa: F811
                                                                                   monkeypatch):
    monkeypatch.setenv("RP_FAULT_STEP", "2")
    exp = Experiment(_cfg(tmp_path, SCHEDULER="median"))
    trial = exp.ask()
    assert exp.tell(trial, {"score": 1.0}) == "CONTINUE"
    with pytest.raises(PluginFault) as info:
        exp.tell(trial, {"score": 2.0})
    message = str(info.value)
    assert message.startswith("scheduler 'median' of plugin 'faults' (distribution rp-faults 1.2.3) failed in "
                              "on_result(): KeyError: 'median'"), message
    assert exp.ask() is None  # the search stopped
    summary = exp.finish()
    # What the files say is what the journal holds: step 1, the trial running, to continue on resume.
    assert summary["status"] == {"RUNNING": 1} and _rows(tmp_path / "exp")[0]["step"] == "1"
    monkeypatch.delenv("RP_FAULT_STEP")  # the plugin is fixed
    again = Experiment(_cfg(tmp_path, SCHEDULER="median"), resume=True)
    trial = again.ask()
    assert trial.id == 1 and trial.step == 1
    while again.tell(trial, {"score": 3.0}) == "CONTINUE":
        pass
    assert trial.status == TrialStatus.TERMINATED and trial.step == 3
    again.finish()


def test_import_error_in_a_constructor_names_the_module_and_the_plugin(with_fault_plugin, tmp_path):  # noqa: F811
    with pytest.raises(PluginFault) as info:
        Experiment(_cfg(tmp_path, SEARCHER="needs_lib"), dry_run=True)
    assert str(info.value) == (
        "searcher 'needs_lib' of plugin 'faults' (distribution rp-faults 1.2.3) needs the module "
        "'rp_library_not_installed', which is not installed (ModuleNotFoundError: No module named "
        "'rp_library_not_installed'); install it or choose another TUNE.SEARCHER")
    assert not os.path.exists(tmp_path / "exp")


def test_a_reporter_fault_is_named_too(with_fault_plugin, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RP_NOTES_FAIL", "1")
    exp = Experiment(_cfg(tmp_path, MAX_STEPS=1, REPORTERS=["notes"]))
    with pytest.raises(PluginFault, match=r"^reporter 'notes' of plugin 'faults' \(distribution rp-faults 1.2.3\) "
                                          r"failed in on_trial_complete\(\): OSError: the notes disk is full"):
        exp.tell(exp.ask(), {"score": 1.0})
    # The result was committed before the reporters heard of it: the trial is done.
    assert exp.finish()["status"] == {"TERMINATED": 1}
