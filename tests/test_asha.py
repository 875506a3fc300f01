"""ASHA's stopping rule and promotions on scripted results, driven through the ask/tell API."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pbt_trainables import Curve, drive
from reidplug.core import checkpoints as ckpt
from reidplug.core.errors import ConfigError
from reidplug.core.experiment import Experiment
from reidplug.core.trial import Decision, TrialStatus
from reidplug.plugins.schedulers._rungs import Rung, rung_levels


def make_exp(tmp_path, name="exp", asha=None, **tune):
    base = {"NAME": name, "TRAINABLE": "noop", "NUM_TRIALS": 20, "MAX_STEPS": 16, "REPORTERS": [],
            "CHECKPOINT_FREQ": 0, "SEED": 3, "SCHEDULER": "asha", "ASHA": asha or {},
            "SPACE": {"x": {"uniform": [0.0, 1.0]}}}
    base.update(tune)
    return Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": base})


def checkpoint(exp, trial, step):
    path = exp.checkpoint_path(trial, step)
    staging = ckpt.staging_dir(path)
    staging.mkdir(parents=True)
    (staging / "state.txt").write_text(str(step))
    ckpt.finalize(staging, path)
    return path


def tell(exp, trial, score, step):
    path = checkpoint(exp, trial, step) if exp.wants_checkpoint(trial, step) else None
    return exp.tell(trial, {"score": score}, step=step, checkpoint=path)


def test_rung_levels_and_quantile_match_numpy():
    assert rung_levels(1, 4, 100) == [1, 4, 16, 64]
    assert rung_levels(1, 4, 64) == [1, 4, 16]
    assert rung_levels(2, 3, 100, offset=1) == [6, 18, 54]
    rng = np.random.default_rng(0)
    rung = Rung(1)
    for tid, score in enumerate(rng.normal(size=37)):
        rung.add(tid, float(score))
        for q in (0.0, 0.5, 0.75, 1.0):
            assert rung.quantile(q) == pytest.approx(np.quantile(list(rung.scores.values()), q))
    ranked = rung.ranked()
    assert [rung.rank(t) for t in ranked] == list(range(37))
    assert ranked == sorted(rung.scores, key=lambda t: -rung.scores[t])


def test_stop_rule_on_a_scripted_sequence(tmp_path):
    exp = make_exp(tmp_path, asha={"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 2}, MAX_CONCURRENT=5)
    trials = [exp.ask() for _ in range(5)]
    # Rung 1, cutoff = median of the scores recorded before; none recorded: go on.
    assert tell(exp, trials[0], 0.5, 1) == Decision.CONTINUE
    assert tell(exp, trials[1], 0.4, 1) == Decision.STOP       # 0.4 < median[0.5]
    assert tell(exp, trials[2], 0.6, 1) == Decision.CONTINUE   # 0.6 >= median[0.5, 0.4] = 0.45
    assert tell(exp, trials[3], 0.5, 1) == Decision.CONTINUE   # a tie with the cutoff goes on
    assert tell(exp, trials[4], 0.49, 1) == Decision.STOP      # < median[0.5, 0.4, 0.6, 0.5] = 0.5
    # Between rungs nothing is decided; the next rung has its own record.
    assert tell(exp, trials[0], 0.1, 2) == Decision.CONTINUE
    assert tell(exp, trials[2], 0.05, 2) == Decision.STOP
    assert tell(exp, trials[0], 0.2, 3) == Decision.CONTINUE
    stops = [d for d in exp.journal.decisions() if d["decision"] == "STOP"]
    assert [(d["trial_id"], d["info"]["rung"], d["info"]["cutoff"]) for d in stops] == [
        (2, 1, 0.5), (5, 1, 0.5), (3, 2, 0.1)]
    assert "cutoff" in stops[0]["info"]["reason"]
    exp.close()


def test_stop_rule_agrees_with_numpy_percentile(tmp_path):
    """Every first arrival at a rung stops exactly when below np.percentile(earlier, 100 * (1 - 1/rf))."""
    exp = make_exp(tmp_path, asha={"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 4}, NUM_TRIALS=60)
    rng = np.random.default_rng(7)
    recorded: list[float] = []
    stopped = 0
    for _ in range(60):
        trial = exp.ask()
        score = float(rng.normal())
        expect_stop = bool(recorded) and score < np.percentile(recorded, 75)
        assert (tell(exp, trial, score, 1) == Decision.STOP) == expect_stop
        stopped += expect_stop
        recorded.append(score)
        if not expect_stop:
            exp.tell(trial, {"score": score}, step=2)  # leave the rung
            exp.terminate(trial)
    assert 30 < stopped < 58  # most are cut, not all
    exp.close()


def test_max_t_below_the_budget_stops_trials(tmp_path):
    exp = make_exp(tmp_path, asha={"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 2, "MAX_T": 3})
    trial = exp.ask()
    assert [tell(exp, trial, 1.0, s) for s in (1, 2, 3)] == [Decision.CONTINUE, Decision.CONTINUE, Decision.STOP]
    assert exp.journal.decisions()[-1]["info"]["reason"] == "max_t"
    exp.close()


def test_promotion_on_a_scripted_sequence(tmp_path):
    exp = make_exp(tmp_path, asha={"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 2, "TYPE": "promotion"}, MAX_STEPS=4,
                   NUM_TRIALS=5)
    sched = exp.scheduler
    t1 = exp.ask()
    assert exp.wants_checkpoint(t1, 1) and exp.wants_checkpoint(t1, 2) and not exp.wants_checkpoint(t1, 3)
    assert tell(exp, t1, 0.1, 1) == Decision.PAUSE  # rung 1 holds one score: top 1 // 2 = nobody
    assert t1.status == TrialStatus.PAUSED and t1.restore_from.endswith("step_00001")
    t2 = exp.ask()
    assert t2.id == 2  # nobody promotable: a new trial
    assert tell(exp, t2, 0.3, 1) == Decision.CONTINUE  # best of two: promoted at once, no pause
    assert tell(exp, t2, 0.3, 2) == Decision.PAUSE     # rung 2 alone
    t3 = exp.ask()
    assert t3.id == 3
    assert tell(exp, t3, 0.2, 1) == Decision.PAUSE     # top 1 of 3 is t2, already promoted
    t4 = exp.ask()
    assert t4.id == 4
    assert tell(exp, t4, 0.05, 1) == Decision.PAUSE    # top 2 of 4: t2 and t3 -> t3 waits for the slot
    assert exp.ask() is t3                              # a promotion comes before a new trial
    assert t3.status == TrialStatus.RUNNING and t3.restore_from.endswith("step_00001")
    assert tell(exp, t3, 0.25, 2) == Decision.PAUSE    # rung 2: [t2 .3, t3 .25] -> top 1 is t2, paused
    assert exp.ask() is t2                              # promoted from rung 2
    assert sched.rungs[0][1].promoted == {2}
    assert tell(exp, t2, 0.4, 3) == Decision.CONTINUE
    assert tell(exp, t2, 0.4, 4) == Decision.STOP
    t5 = exp.ask()
    assert t5.id == 5
    assert tell(exp, t5, 0.0, 1) == Decision.PAUSE
    # No trial can be created and none runs: the leader of the highest rung goes on, the rest end.
    assert exp.ask() is t3
    assert {t.id: t.status for t in exp.trials.values() if t.status == TrialStatus.TERMINATED} == {
        1: TrialStatus.TERMINATED, 2: TrialStatus.TERMINATED, 4: TrialStatus.TERMINATED, 5: TrialStatus.TERMINATED}
    assert tell(exp, t3, 0.3, 3) == Decision.CONTINUE
    assert tell(exp, t3, 0.3, 4) == Decision.STOP
    assert exp.ask() is None and sched.is_finished()
    reasons = [d["info"].get("reason") for d in exp.journal.decisions() if d["trial_id"] == 4]
    assert reasons == ["paused at rung 1", "not promoted"]
    exp.close()


def test_brackets_are_assigned_round_robin_with_offset_rungs(tmp_path):
    exp = make_exp(tmp_path, asha={"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 2, "BRACKETS": 3}, MAX_STEPS=16,
                   MAX_CONCURRENT=6)
    sched = exp.scheduler
    assert sched.levels == [[1, 2, 4, 8], [2, 4, 8], [4, 8]]
    trials = [exp.ask() for _ in range(6)]
    assert [sched.bracket_of[t.id] for t in trials] == [0, 1, 2, 0, 1, 2]
    tell(exp, trials[1], 1.0, 1)
    assert len(sched.rungs[1][0]) == 0  # bracket 1 has no rung at step 1
    tell(exp, trials[1], 1.0, 2)
    assert sched.rungs[1][0].scores == {2: 1.0}
    exp.close()


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="TUNE.ASHA.TYPE: TYPE must be 'stop' or 'promotion'"):
        make_exp(tmp_path, asha={"TYPE": "promote"})
    with pytest.raises(ConfigError, match="TUNE.ASHA.MAX_T: MAX_T must be between"):
        make_exp(tmp_path, name="b", asha={"MAX_T": 17})
    with pytest.raises(ConfigError, match="unknown option"):
        make_exp(tmp_path, name="c", asha={"GRACE": 2})


def test_promotion_needs_a_checkpointable_trainable(tmp_path):
    with pytest.raises(ConfigError, match="needs a Trainable class with save/load"):
        make_exp(tmp_path, asha={"TYPE": "promotion"}, TRAINABLE="trainables_for_tests:quadratic")


def test_state_round_trip_continues_identically(tmp_path):
    """A scheduler restored from its pickled state holds the same rungs, ranks and waiting trials."""
    exp = make_exp(tmp_path, asha={"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3, "TYPE": "promotion"}, NUM_TRIALS=30,
                   MAX_STEPS=9)
    log = drive(exp, Curve, concurrency=3)
    sched = exp.scheduler
    clone = type(sched)(sched.searcher, max_steps=9, grace_period=1, reduction_factor=3, type="promotion")
    clone.setup(exp)
    clone.load_state_dict(pickle.loads(pickle.dumps(sched.state_dict())))
    assert clone.state_dict() == sched.state_dict()
    for a, b in zip(sched.rungs[0], clone.rungs[0]):
        assert a.ranked() == b.ranked() and a.waiting() == b.waiting()
    # Trials ranked into the top third of rung 1 were promoted; the rest were not.
    rung1 = sched.rungs[0][0]
    assert rung1.promoted <= set(rung1.ranked()[: len(rung1) // 3 + 1])
    assert sum(1 for _, step, d in log if step == 9 and d == "STOP") >= 1
    exp.close()
