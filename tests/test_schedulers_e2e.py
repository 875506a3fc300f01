"""Each scheduler in a real run (worker processes, two trials at a time), and resuming a stopped search."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import Counter

import pytest

from reidplug.core import state as state_data
from reidplug.core.tuner import Tuner


def make_cfg(tmp_path, scheduler, options=None, **tune):
    base = {
        "NAME": "exp", "TRAINABLE": "trainables_for_tests:Counter", "NUM_TRIALS": 10, "MAX_CONCURRENT": 2,
        "MAX_STEPS": 9, "SEED": 4, "REPORTERS": ["jsonl", "csv"], "CHECKPOINT_FREQ": 0, "SCHEDULER": scheduler,
        scheduler.upper(): options or {}, "SPACE": {"x": {"uniform": [0.0, 1.0]}, "y": {"choice": ["a", "b"]}},
    }
    base.update(tune)
    return {"OUTPUT_DIR": str(tmp_path), "TUNE": base}


def read(exp_dir):
    with sqlite3.connect(exp_dir / "experiment.db") as conn:
        results = [(tid, step, json.loads(m)) for tid, step, m in
                   conn.execute("SELECT trial_id, step, metrics FROM results ORDER BY seq")]
        decisions = [(tid, step, d, json.loads(i)) for tid, step, d, i in
                     conn.execute("SELECT trial_id, step, decision, info FROM decisions ORDER BY seq")]
        events = [(tid, kind) for tid, kind in conn.execute("SELECT trial_id, kind FROM events ORDER BY seq")]
    with open(exp_dir / "decisions.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    return results, decisions, events, csv_rows


CASES = {
    "asha-stop": ("asha", {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 2}, {"TRAINABLE": "trainables_for_tests:quadratic",
                                                                      "MAX_STEPS": 3}),
    "asha-promotion": ("asha", {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3, "TYPE": "promotion"}, {}),
    "hyperband": ("hyperband", {"ETA": 3}, {"NUM_TRIALS": 13}),
    "bohb": ("bohb", {"ETA": 3}, {"NUM_TRIALS": 16, "SPACE": {"x": {"uniform": [0.0, 1.0]}}}),
    "bohb_async": ("bohb_async", {"REDUCTION_FACTOR": 3}, {"NUM_TRIALS": 12}),
    "pbt": ("pbt", {"PERTURBATION_INTERVAL": 2, "POPULATION": 4}, {"NUM_TRIALS": 4, "MAX_STEPS": 8}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_scheduler_in_a_real_run(tmp_path, case):
    scheduler, options, tune = CASES[case]
    summary = Tuner(make_cfg(tmp_path, scheduler, options, **tune)).run()
    exp_dir = tmp_path / "exp"
    results, decisions, events, csv_rows = read(exp_dir)
    assert set(summary["status"]) == {"TERMINATED"}, summary["status"]
    assert summary["best_trial"] is not None and (exp_dir / "best_config.yaml").exists()
    assert len(csv_rows) == len(decisions) and all(r["decision"] for r in csv_rows)
    reasons = Counter(str(info.get("reason", "")) for _, _, _, info in decisions)
    steps = {tid: step for tid, step, _ in results}
    max_steps = tune.get("MAX_STEPS", 9)
    if case == "asha-stop":
        stops = [info for _, _, d, info in decisions if d == "STOP" and "cutoff" in info.get("reason", "")]
        assert stops and all(info["cutoff"] is not None for info in stops)
        by_step = {(tid, step): m["score"] for tid, step, m in results}
        for tid, step, d, info in decisions:
            if "cutoff" in info.get("reason", ""):
                assert (by_step[(tid, step)] < info["cutoff"]) == (d == "STOP")
    elif case == "asha-promotion":
        assert reasons["paused at rung 1"] >= 1 and reasons["paused at rung 3"] >= 1
        assert any(kind == "paused" for _, kind in events)
        assert max(steps.values()) == max_steps  # promoted all the way
    elif case in ("hyperband", "bohb"):
        # Every trial that went past a budget had paused there or was promoted there.
        assert Counter(steps.values())[9] >= 1 and Counter(steps.values())[1] >= 5
        assert reasons["not promoted"] >= 3
        if case == "bohb":
            with sqlite3.connect(exp_dir / "experiment.db") as conn:
                blob = conn.execute("SELECT blob FROM state WHERE component = 'searcher'").fetchone()[0]
            picks = state_data.loads(blob)["picks"]
            assert picks["model"] >= 1 and picks["model"] + picks["random"] == 16
    elif case == "bohb_async":
        # Promotion with cohorts (the default): trials pause at the rungs and the best go on to the top.
        assert reasons["paused at rung 1"] >= 1 and max(steps.values()) == max_steps
    elif case == "pbt":
        assert any(kind == "exploit" for _, kind in events)
        assert (exp_dir / "pbt_lineage.jsonl").exists()
        # Counter's own count follows the step: a recipient went on from its donor's checkpoint.
        assert all(m["count"] == step for _, step, m in results)
        assert set(steps.values()) == {8}


def test_resume_restores_hyperband_and_asha_state(tmp_path):
    cfg = make_cfg(tmp_path, "hyperband", {"ETA": 3}, NUM_TRIALS=9)
    Tuner(cfg).run()
    with sqlite3.connect(tmp_path / "exp" / "experiment.db") as conn:
        saved = state_data.loads(conn.execute("SELECT blob FROM state WHERE component = 'scheduler'").fetchone()[0])
    assert saved["count"] == 1  # one iteration (bracket s=2, budgets 1, 3, 9) was run
    tuner = Tuner(make_cfg(tmp_path, "hyperband", {"ETA": 3}, NUM_TRIALS=12), resume=True)
    sched = tuner.experiment.scheduler
    assert sched.state_dict() == saved
    tuner.run()
    # The next iteration is the next bracket (s=1: 3 trials at budget 3), not the first one again.
    results, decisions, _, _ = read(tmp_path / "exp")
    assert {(info.get("iteration"), info.get("bracket")) for tid, _, _, info in decisions
            if tid >= 10 and "budget" in info} == {(1, 1)}
    first = {tid: step for tid, step, _ in results if tid >= 10}
    assert min(first.values()) >= 3

    cfg = make_cfg(tmp_path, "asha", {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 2}, NAME="asha", NUM_TRIALS=4,
                   TRAINABLE="trainables_for_tests:quadratic", MAX_STEPS=3)
    Tuner(cfg).run()
    cfg["TUNE"]["NUM_TRIALS"] = 8
    tuner = Tuner(cfg, resume=True)
    rung = tuner.experiment.scheduler.rungs[0][0]
    assert set(rung.scores) == {1, 2, 3, 4}  # the rung keeps the first run's scores
    tuner.run()
    assert set(rung.scores) == set(range(1, 9))
