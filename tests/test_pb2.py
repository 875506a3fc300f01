"""PB2: the GP-UCB explore step stays in the domain, follows the data, spreads a batch, and resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pbt_trainables import Curve, drive

from reidplug.core.errors import ConfigError
from reidplug.core.experiment import Experiment
from reidplug.core.state import dumps, loads
from reidplug.core.trial import TrialStatus

SPACE = {"x": {"uniform": [0.0, 1.0]}, "lr": {"loguniform": [1e-4, 1e-1]}, "bs": {"choice": [16, 32, 64]}}


def tune(name="exp", pb2=None, **extra):
    base = {"NAME": name, "TRAINABLE": "noop", "NUM_TRIALS": 4, "MAX_STEPS": 10, "REPORTERS": [], "SEED": 3,
            "CHECKPOINT_FREQ": 0, "SCHEDULER": "pb2", "PB2": {"PERTURBATION_INTERVAL": 1, **(pb2 or {})},
            "SPACE": SPACE}
    base.update(extra)
    return base


def lineage(exp):
    path = exp.dir / "pbt_lineage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_explored_values_come_from_the_gp_and_stay_in_the_domain(tmp_path):
    exp = Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": tune(pb2={"QUANTILE_FRACTION": 0.5})})
    drive(exp, Curve, concurrency=4)
    sched = exp.scheduler
    entries = lineage(exp)
    assert sched.explores["gp"] >= 3, sched.explores  # the model chose, not the PBT fallback
    assert entries
    for e in entries:
        assert exp.space.contains(e["new_params"]), e["new_params"]
    assert all(t.status == TrialStatus.TERMINATED and t.step == 10 for t in exp.trials.values())
    # Every observation is (step, score, unit x, unit lr, rate): the choice is left to PBT's explore.
    assert sched.names == ["x", "lr"]
    assert all(len(o) == 5 and 0 <= o[2] <= 1 and 0 <= o[3] <= 1 for o in sched.observations)
    exp.close()


def _seeded(exp, rng, n=60):
    """Observations whose rate of change peaks at x = 0.7 (any lr), at steps 1..5."""
    sched = exp.scheduler
    sched.observations = []
    for _ in range(n):
        u = rng.random(2)
        step = int(rng.integers(1, 6))
        sched.observations.append([float(step), 0.5, float(u[0]), float(u[1]), float(1.0 - 8 * (u[0] - 0.7) ** 2)])


def test_the_choice_follows_the_data_and_a_batch_spreads_out(tmp_path):
    # Random explore would land within 0.1 of the peak a fifth of the time; 5 draws in a row
    # would pass by chance with probability 0.2**5 = 3e-4. The GP's mean points there every time.
    exp = Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": tune(pb2={"KAPPA": 0.1})})
    sched = exp.scheduler
    rng = np.random.default_rng(0)
    for _ in range(5):
        _seeded(exp, rng)
        sched.batch = []
        u = sched._select(6, 0.5)
        assert abs(u[0] - 0.7) < 0.1, u
    # With a wide bonus, the members given parameters at the same step push the next one away.
    sched.kappa = 3.0
    _seeded(exp, rng)
    sched.batch = []
    first = sched._select(6, 0.5)
    second = sched._select(6, 0.5)
    assert np.linalg.norm(first - second) > 0.05, (first, second)
    assert len(sched.batch) == 2
    sched._select(7, 0.5)  # a later step starts a new batch
    assert [s for s, _ in sched.batch] == [7]
    exp.close()


def test_resume_restores_the_model_and_chooses_as_the_original(tmp_path):
    cfg = tune(pb2={"QUANTILE_FRACTION": 0.5})
    exp = Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": cfg})
    drive(exp, Curve, concurrency=4, limit=22)
    state = exp.scheduler.state_dict()
    assert state["observations"] and state["anchors"]
    loads(dumps(state))  # plain data: nothing in it needs the unpickler
    exp.close()  # a crash: trials are left running or paused
    again = Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": cfg}, resume=True)
    assert again.scheduler.state_dict() == state
    # The same data and random state give the same choice as the run that was interrupted would make.
    fresh = Experiment({"OUTPUT_DIR": str(tmp_path / "b"), "TUNE": cfg})
    fresh.scheduler.load_state_dict(loads(dumps(state)))
    assert np.array_equal(fresh.scheduler._select(4, 0.5), again.scheduler._select(4, 0.5))
    fresh.close()
    again.scheduler.load_state_dict(loads(dumps(state)))
    drive(again, Curve, concurrency=4)
    assert all(t.step == 10 and t.status == TrialStatus.TERMINATED for t in again.trials.values())
    again.close()


def test_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="TUNE.PB2.WINDOW"):
        Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": tune(pb2={"WINDOW": 1})})
    with pytest.raises(ConfigError, match="TUNE.PB2.KAPPA"):
        Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": tune(name="b", pb2={"KAPPA": -1.0})})
    with pytest.raises(ConfigError, match="unknown option"):
        Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": tune(name="c", pb2={"EXPLORE": "unit"})})


def test_the_likelihood_grid_is_rerun_only_once_the_data_grew_by_a_tenth(tmp_path, monkeypatch):
    from reidplug.plugins.schedulers import pb2

    fits = []
    grid = pb2.TimeVaryingGP._fit
    monkeypatch.setattr(pb2.TimeVaryingGP, "_fit", lambda self: fits.append(len(self.y)) or grid(self))
    exp = Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": tune()})
    sched = exp.scheduler
    _seeded(exp, np.random.default_rng(0), n=60)
    sched._select(6, 0.5)
    assert fits == [60] and sched.theta is not None
    sched.logged += 5  # fewer new observations than a tenth of 60: the hyperparameters are kept
    sched._select(6, 0.5)
    assert fits == [60]
    sched.logged += 1
    sched._select(6, 0.5)
    assert fits == [60, 60]
    state = loads(dumps(sched.state_dict()))
    assert state["theta"] == pytest.approx(sched.theta) and state["theta_at"] == sched.logged
    exp.close()
