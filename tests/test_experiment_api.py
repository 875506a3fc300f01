"""The Experiment ask/tell API as an application drives it: the README's loop, run as written."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from reidplug.core.errors import UserError
from reidplug.core.experiment import Experiment
from reidplug.core.trial import TrialStatus

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


class MyModel:
    """What the README's loop calls "your model": improves with steps, saves its step count."""

    def __init__(self, lr, width):
        self.lr, self.width, self.steps = lr, width, 0

    def train_one_step(self):
        self.steps += 1
        return {"score": self.steps * self.lr * self.width}

    def save(self, folder):
        Path(folder, "steps.json").write_text(json.dumps(self.steps))

    def load(self, folder):
        self.steps = json.loads(Path(folder, "steps.json").read_text())


def test_the_readme_loop_runs_every_trial_to_its_end(tmp_path, monkeypatch, capsys):
    [config] = [b for b in _blocks("yaml") if b.startswith("# ask_tell.yml")]
    [loop] = [b for b in _blocks("python") if "exp.ask()" in b]
    monkeypatch.chdir(tmp_path)
    Path("ask_tell.yml").write_text(config)
    tune = yaml.safe_load(config)["TUNE"]
    assert tune["MAX_STEPS"] > 1 and tune["SCHEDULER"] == "hyperband"  # multi-step trials, some paused

    scope = {"MyModel": MyModel}
    exec(compile(loop, "README.md", "exec"), scope)

    exp, summary = scope["exp"], scope["summary"]
    assert summary["status"] == {"TERMINATED": tune["NUM_TRIALS"]}  # none left RUNNING or PAUSED
    assert exp.searcher.live == {}  # the searcher heard that every trial ended
    folder = tmp_path / "logs" / "ask_tell"
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert len(rows) == sum(t.step for t in exp.trials.values())  # a reporter on without an extra call
    assert max(t.step for t in exp.trials.values()) == tune["MAX_STEPS"]
    # A promoted trial continued from its checkpoint: its steps count on, none is reported twice.
    for trial in exp.trials.values():
        assert [r["step"] for r in trial.results] == list(range(1, trial.step + 1))
        assert trial.results[-1]["score"] == pytest.approx(trial.step * trial.params["lr"] * trial.params["width"])
    assert "6/6 trials" in capsys.readouterr().out  # the console reporter too
    assert (folder / "results.csv").is_file() and (folder / "summary.json").is_file()


def _cfg(tmp_path, **tune):
    base = {"NAME": "exp", "TRAINABLE": "external", "NUM_TRIALS": 4, "MAX_STEPS": 3, "REPORTERS": [],
            "SPACE": {"x": {"uniform": [0.0, 1.0]}}}
    return {"OUTPUT_DIR": str(tmp_path), "TUNE": {**base, **tune}}


def test_ask_honours_max_concurrent_and_tell_refuses_a_finished_trial(tmp_path):
    exp = Experiment(_cfg(tmp_path, MAX_CONCURRENT=2))
    a, b = exp.ask(), exp.ask()
    assert a.id == 1 and b.id == 2 and exp.ask() is None  # full: tell the running ones first
    decisions = [exp.tell(a, {"score": 1.0}) for _ in range(3)]
    assert decisions == ["CONTINUE", "CONTINUE", "STOP"] and a.status == TrialStatus.TERMINATED
    with pytest.raises(UserError, match="trial 1 is TERMINATED, not RUNNING"):
        exp.tell(a, {"score": 2.0})
    c = exp.ask()
    assert c.id == 3 and exp.ask() is None
    summary = exp.finish()
    # Trials not told to their end stay RUNNING, to continue on resume; the one told to its end is done.
    assert summary["status"] == {"TERMINATED": 1, "RUNNING": 2}


def test_a_restarted_trial_without_a_checkpoint_replays_from_step_zero(tmp_path, capsys):
    exp = Experiment(_cfg(tmp_path, NUM_TRIALS=1, MAX_STEPS=4, REPORTERS=["console"]))
    trial = exp.ask()
    for score in (1.0, 2.0):
        exp.tell(trial, {"score": score})
    exp.close()  # the application dies here
    again = Experiment(_cfg(tmp_path, NUM_TRIALS=1, MAX_STEPS=4, REPORTERS=["console"]), resume=True)
    trial = again.ask()
    assert trial.id == 1 and trial.restore_from is None and trial.step == 2
    decisions = [again.tell(trial, {"score": score}) for score in (10.0, 20.0, 3.0, 4.0)]
    assert decisions == ["CONTINUE", "CONTINUE", "CONTINUE", "STOP"]
    assert [r["score"] for r in trial.results] == [1.0, 2.0, 3.0, 4.0]  # steps 1-2 were not recorded twice
    again.finish()
    out = capsys.readouterr().out
    assert "trial 1 restarted from step 0 (no checkpoint), 2 steps already recorded" in out
    assert "resumed at step" not in out
    assert os.path.isfile(tmp_path / "exp" / "summary.json")
