"""Hyperband: hpbandster's bracket arithmetic and synchronous successive halving."""

from __future__ import annotations

import pickle
from collections import Counter

import pytest

from pbt_trainables import Curve, drive, save_checkpoint
from reidplug.core.errors import ConfigError
from reidplug.core.experiment import Experiment
from reidplug.core.trial import Decision, TrialStatus
from reidplug.plugins.schedulers.hyperband import hyperband_brackets, num_brackets, step_budgets


def make_exp(tmp_path, name="exp", hyperband=None, resume=False, **tune):
    base = {"NAME": name, "TRAINABLE": "noop", "NUM_TRIALS": 100, "MAX_STEPS": 9, "REPORTERS": [],
            "CHECKPOINT_FREQ": 0, "SEED": 5, "SCHEDULER": "hyperband", "HYPERBAND": hyperband or {},
            "SPACE": {"x": {"uniform": [0.0, 1.0]}}}
    base.update(tune)
    return Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": base}, resume=resume)


def tell(exp, trial, score, step):
    path = save_checkpoint(exp, trial, Curve(), step) if exp.wants_checkpoint(trial, step) else None
    return exp.tell(trial, {"score": score}, step=step, checkpoint=path)


def test_hpbandster_brackets_9_729_eta3():
    brackets = hyperband_brackets(9, 729, 3)
    assert [b["ns"] for b in brackets] == [[81, 27, 9, 3, 1], [27, 9, 3, 1], [9, 3, 1], [6, 2], [5]]
    assert [b["s"] for b in brackets] == [4, 3, 2, 1, 0]
    assert brackets[0]["budgets"] == pytest.approx([9, 27, 81, 243, 729])
    for b in brackets:
        assert b["budgets"] == pytest.approx([9, 27, 81, 243, 729][-len(b["ns"]):])
        assert step_budgets(b["budgets"]) == [9, 27, 81, 243, 729][-len(b["ns"]):]


def test_bracket_arithmetic_edge_cases():
    # floor before the multiplication (hpbandster), not ceil (Li et al., Ray)
    assert [b["ns"] for b in hyperband_brackets(1, 9, 3)] == [[9, 3, 1], [3, 1], [3]]
    assert [b["ns"] for b in hyperband_brackets(1, 16, 2)][-2:] == [[4, 2], [5]]
    assert num_brackets(1, 1000, 10) == 4  # float arithmetic would give 3
    assert num_brackets(1, 100, 3) == 5
    assert step_budgets(hyperband_brackets(1, 100, 3)[0]["budgets"]) == [1, 4, 11, 33, 100]
    with pytest.raises(ValueError, match="collide once rounded"):
        step_budgets([1.2, 1.4, 2.0])
    with pytest.raises(ValueError, match="ETA must be above 1"):
        hyperband_brackets(1, 9, 1)


def test_synchronous_halving_promotes_the_best_and_ends_the_rest(tmp_path):
    exp = make_exp(tmp_path, NUM_TRIALS=9)  # min 1, max 9, eta 3: the first bracket is ns [9, 3, 1]
    assert [b["steps"] for b in exp.scheduler.plan()] == [[1, 3, 9], [3, 9], [9]]
    log = drive(exp, Curve, concurrency=1)
    x = {t.id: t.params["x"] for t in exp.trials.values()}
    closeness = sorted(x, key=lambda t: (abs(x[t] - 0.3), t))  # Curve ranks trials by |x - 0.3| at any step
    steps = {t.id: t.step for t in exp.trials.values()}
    assert sorted(steps.values()) == [1] * 6 + [3] * 2 + [9]
    assert [t for t in closeness[:3]] == sorted((t for t in steps if steps[t] >= 3), key=closeness.index)
    assert steps[closeness[0]] == 9
    assert all(t.status == TrialStatus.TERMINATED for t in exp.trials.values())
    # Results budget by budget: nobody reaches step 2 before all nine have reported step 1.
    first_step2 = next(i for i, (_, s, _) in enumerate(log) if s == 2)
    assert sum(1 for _, s, _ in log[:first_step2] if s == 1) == 9
    reasons = Counter(d["info"].get("reason") for d in exp.journal.decisions())
    # The last trial of a stage to report is decided at once, the paused ones are ended.
    assert (reasons["not promoted"], reasons["not promoted at budget 1"], reasons["not promoted at budget 3"]) == (
        5 + 1, 1, 1)
    assert exp.scheduler.iterations == []
    exp.close()


def test_iterations_follow_the_bracket_order_and_overlap_when_slots_are_free(tmp_path):
    exp = make_exp(tmp_path, MAX_STEPS=3, MAX_CONCURRENT=4)  # min 1, max 3: ns [3, 1] at [1, 3], then ns [2] at [3]
    sched = exp.scheduler
    t1, t2, t3 = exp.ask(), exp.ask(), exp.ask()
    assert tell(exp, t1, 0.1, 1) == Decision.PAUSE
    assert tell(exp, t2, 0.3, 1) == Decision.PAUSE
    t4 = exp.ask()  # iteration 0 waits for t3: iteration 1 (bracket s=0) starts
    assert (sched.iteration_of[t4.id], sched.iteration_of[t1.id]) == (1, 0)
    assert sched.iterations[1]["steps"] == [3] and sched.iterations[1]["ns"] == [2]
    assert tell(exp, t3, 0.2, 1) == Decision.STOP  # last of its stage, not the best
    assert exp.ask() is t2  # promoted: resumes from its checkpoint before anything new starts
    assert t1.status == TrialStatus.TERMINATED  # ended when the slot was handed out
    assert t2.restore_from.endswith("step_00001")
    assert [tell(exp, t2, 0.5, s) for s in (2, 3)] == [Decision.CONTINUE, Decision.STOP]
    assert exp.ask().id == 5 and sched.iteration_of[5] == 1
    exp.close()


def test_a_failed_trial_counts_as_worst_and_nothing_hangs(tmp_path):
    exp = make_exp(tmp_path, NUM_TRIALS=9)

    def fail(trial, step):
        # The trial nearest to the optimum fails at its first step: it must not be promoted.
        return step == 1 and trial.id == 4

    drive(exp, Curve, concurrency=2, fail=fail)
    assert exp.trials[4].status == TrialStatus.ERROR
    assert all(t.status.done for t in exp.trials.values()) and exp.scheduler.is_finished()
    steps = sorted(t.step for t in exp.trials.values() if t.status != TrialStatus.ERROR)
    assert steps == [1] * 5 + [3] * 2 + [9]
    exp.close()


def test_creation_cut_short_promotes_in_proportion(tmp_path):
    exp = make_exp(tmp_path, NUM_TRIALS=6)  # the first stage wanted 9
    drive(exp, Curve, concurrency=2)
    steps = sorted(t.step for t in exp.trials.values())
    assert steps == [1, 1, 1, 1, 3, 9]  # 6 * 3 // 9 = 2 promoted, then 1
    exp.close()


def test_state_round_trip_and_resume(tmp_path):
    exp = make_exp(tmp_path, NUM_TRIALS=20, MAX_CONCURRENT=5)
    trials = [exp.ask() for _ in range(5)]
    for t in trials[:3]:
        assert tell(exp, t, t.params["x"], 1) == Decision.PAUSE
    state = exp.scheduler.state_dict()
    assert pickle.loads(pickle.dumps(state)) == state
    exp.close()  # a crash: no finish()
    again = make_exp(tmp_path, NUM_TRIALS=20, MAX_CONCURRENT=5, resume=True)
    again_state = again.scheduler.state_dict()
    assert again_state["iterations"] == state["iterations"] and again_state["count"] == state["count"]
    drive(again, Curve, concurrency=2)
    assert all(t.status.done for t in again.trials.values())
    assert sum(1 for t in again.trials.values() if t.step == 9) >= 2
    again.close()


def test_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="MAX_BUDGET 12 is above the experiment's 9 steps"):
        make_exp(tmp_path, hyperband={"MAX_BUDGET": 12})
    with pytest.raises(ConfigError, match="needs a Trainable class"):
        make_exp(tmp_path, name="b", TRAINABLE="trainables_for_tests:quadratic")
