"""The experiment loop end to end with small trainables in real worker processes."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from reidplug.core.errors import ConfigError
from reidplug.core.experiment import Experiment
from reidplug.core.lock import ExperimentLocked
from reidplug.core.trial import Decision, TrialStatus
from reidplug.core.tuner import Tuner


def make_cfg(tmp_path, **tune):
    base = {
        "NAME": "exp",
        "TRAINABLE": "trainables_for_tests:quadratic",
        "NUM_TRIALS": 6,
        "MAX_CONCURRENT": 2,
        "MAX_STEPS": 3,
        "REPORTERS": ["jsonl", "csv"],
        "SPACE": {"x": {"uniform": [0.0, 1.0]}},
    }
    base.update(tune)
    return {"OUTPUT_DIR": str(tmp_path), "TUNE": base}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_function_trainable_search_writes_outputs(tmp_path):
    summary = Tuner(make_cfg(tmp_path)).run()
    exp_dir = tmp_path / "exp"
    assert summary["num_trials"] == 6 and summary["status"] == {"TERMINATED": 6}
    rows = read_csv(exp_dir / "results.csv")
    assert len(rows) == 6 and all(r["step"] == "3" for r in rows)
    best = max(rows, key=lambda r: float(r["score"]))
    assert summary["best_trial"] == int(best["trial_id"])
    best_cfg = yaml.safe_load((exp_dir / "best_config.yaml").read_text())
    assert best_cfg["params"]["x"] == pytest.approx(float(best["param:x"]))
    for tid in range(1, 7):
        tdir = exp_dir / f"trial_{tid:04d}"
        metrics = [json.loads(line) for line in (tdir / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == [1, 2, 3] and [m["epoch"] for m in metrics] == [1, 2, 3]
        assert yaml.safe_load((tdir / "config.yaml").read_text())["x"] == pytest.approx(metrics[0]["score"] and
                                                                                        yaml.safe_load((tdir / "config.yaml").read_text())["x"])
    progress = read_csv(exp_dir / "progress.csv")
    assert len(progress) == 18
    decisions = read_csv(exp_dir / "decisions.csv")
    assert sum(d["decision"] == "STOP" for d in decisions) == 6


def test_a_failing_trial_is_isolated(tmp_path):
    summary = Tuner(make_cfg(tmp_path, TRAINABLE="trainables_for_tests:failing_when_big", NUM_TRIALS=8)).run()
    exp = tmp_path / "exp"
    trials = {int(r["trial_id"]): r for r in read_csv(exp / "results.csv")}
    errored = [t for t, r in trials.items() if r["status"] == "ERROR"]
    ok = [t for t, r in trials.items() if r["status"] == "TERMINATED"]
    assert errored and ok and len(errored) + len(ok) == 8
    for t in errored:
        assert float(trials[t]["param:x"]) > 0.5
        text = (exp / f"trial_{t:04d}" / "error.txt").read_text()
        assert "Traceback" in text and "ValueError: x=" in text
    assert summary["best_trial"] in ok


def test_non_finite_metric_makes_the_trial_error(tmp_path):
    Tuner(make_cfg(tmp_path, TRAINABLE="trainables_for_tests:nan_when_big", NUM_TRIALS=8)).run()
    rows = read_csv(tmp_path / "exp" / "results.csv")
    for r in rows:
        assert (r["status"] == "ERROR") == (float(r["param:x"]) > 0.5)
        if r["status"] == "ERROR":
            assert "not finite" in r["error"]


def test_rejected_configurations_become_failed_trials(tmp_path):
    # The data exists (a search with no usable dataset stops before it starts); the configurations do not fit.
    data = {"NAMES": ["SyntheticMarket"], "TESTS": ["SyntheticMarket"],
            "SYNTH": {"IDS": 8, "CAMS": 2, "HEIGHT": 32, "WIDTH": 16}}
    cfg = {"OUTPUT_DIR": str(tmp_path), "DATASETS": data, "DATALOADER": {"SAMPLER_TRAIN": "NaiveIdentitySampler"},
           "TUNE": {"NAME": "exp", "NUM_TRIALS": 3, "REPORTERS": [],
                    "SPACE": {"SOLVER.IMS_PER_BATCH": {"choice": [30, 50]}}}}
    summary = Tuner(cfg).run()
    assert summary["status"] == {"ERROR": 3} and summary["best_trial"] is None
    err = (tmp_path / "exp" / "trial_0001" / "error.txt").read_text()
    assert "rejected configuration" in err and "SOLVER.IMS_PER_BATCH" in err and "not divisible" in err


def test_existing_experiment_needs_resume_or_fresh(tmp_path):
    cfg = make_cfg(tmp_path, NUM_TRIALS=2)
    Tuner(cfg).run()
    with pytest.raises(ConfigError, match="already exists"):
        Tuner(cfg)
    Tuner(cfg, fresh=True).run()
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("exp.")]
    assert len(moved) == 1 and (moved[0] / "experiment.db").exists()


def test_resume_continues_to_more_trials(tmp_path):
    Tuner(make_cfg(tmp_path, NUM_TRIALS=3, SEED=7)).run()
    summary = Tuner(make_cfg(tmp_path, NUM_TRIALS=5, SEED=7), resume=True).run()
    assert summary["num_trials"] == 5
    fresh = Tuner(make_cfg(tmp_path, NAME="other", NUM_TRIALS=5, SEED=7)).run()
    a = {int(r["trial_id"]): float(r["param:x"]) for r in read_csv(tmp_path / "exp" / "results.csv")}
    b = {int(r["trial_id"]): float(r["param:x"]) for r in read_csv(tmp_path / "other" / "results.csv")}
    assert a == b and fresh["num_trials"] == 5


def test_resume_refuses_an_incompatible_config(tmp_path):
    Tuner(make_cfg(tmp_path, NUM_TRIALS=1)).run()
    changed = make_cfg(tmp_path, NUM_TRIALS=1, SPACE={"x": {"uniform": [0.0, 2.0]}})
    with pytest.raises(ConfigError, match=r"TUNE.SPACE.x.uniform.*changed since the experiment started"):
        Tuner(changed, resume=True)


def test_a_second_live_run_is_refused(tmp_path):
    first = Experiment(make_cfg(tmp_path))
    try:
        with pytest.raises(ExperimentLocked, match="another reidplug run"):
            Experiment(make_cfg(tmp_path), resume=True)
    finally:
        first.close()
    Experiment(make_cfg(tmp_path), resume=True).close()  # released: a new run may take it


def test_ask_tell_experiment(tmp_path):
    exp = Experiment(make_cfg(tmp_path, NUM_TRIALS=4, MAX_STEPS=2, TRAINABLE="noop"))
    seen = []
    while (trial := exp.ask()) is not None:
        assert trial.status == TrialStatus.RUNNING
        d1 = exp.tell(trial, {"score": trial.params["x"]})
        d2 = exp.tell(trial, {"score": trial.params["x"] + 1})
        assert (d1, d2) == (Decision.CONTINUE, Decision.STOP)
        seen.append(trial.id)
    summary = exp.finish()
    assert seen == [1, 2, 3, 4] and summary["status"] == {"TERMINATED": 4}
    assert all(t.step == 2 for t in exp.trials.values())


def test_unknown_plugin_section_is_an_error(tmp_path):
    cfg = make_cfg(tmp_path)
    cfg["TUNE"]["ASAH"] = {"GRACE_PERIOD": 1}
    with pytest.raises(ConfigError, match=r"TUNE.ASAH: unknown key"):
        Experiment(cfg, dry_run=True)
    cfg = make_cfg(tmp_path)
    cfg["TUNE"]["CONSOLE"] = {"QUIETT": True}
    cfg["TUNE"]["REPORTERS"] = ["console"]
    with pytest.raises(ConfigError, match=r"TUNE.CONSOLE.QUIETT: unknown option \(did you mean 'QUIET'\?\)"):
        Experiment(cfg, dry_run=True)
