"""BOHB learning from the curves: extrapolation to the largest budget and each budget's rank agreement."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from pbt_trainables import Curve, drive
from reidplug.core.experiment import Experiment
from reidplug.core.space import SearchSpace
from reidplug.plugins.schedulers.bohb import BOHBScheduler
from reidplug.plugins.schedulers.bohb_async import BOHBAsyncScheduler
from reidplug.plugins.searchers.bohb import BOHBSearcher

SPACE = SearchSpace.parse({"x": {"uniform": [0.0, 1.0]}, "z": {"uniform": [0.0, 1.0]}}, schema=False)


def crossing(x: float, step: int) -> float:
    """Fast learners (large x) lead up to step 3, slow ones (small x) lead at step 9."""
    return (1 - x) * step / 9 + 0.6 * x * min(step, 3) / 3


def report(searcher, tid, curve, budgets):
    for b in budgets:
        searcher.on_result(tid, {"score": curve(b), "step": b})


def trained(n=12, curve=crossing, **options):
    s = BOHBSearcher(SPACE, seed=0, **options)
    s.set_budgets([1, 3, 9])
    for tid in range(n):
        x = s.suggest(tid)["x"]
        report(s, tid, lambda b: curve(x, b), [1, 3, 9])
        s.on_complete(tid, {"score": curve(x, 9), "step": 9})
    return s


def test_crossing_curves_are_ranked_by_where_they_are_heading():
    s = trained()
    fast, slow = 1000, 1001
    for tid, x in ((fast, 0.9), (slow, 0.1)):
        s.live[tid] = {"x": x, "z": 0.5}
        report(s, tid, lambda b: crossing(x, b), [1, 3])
    # At budget 3 the fast learner is ahead (its loss is lower) ...
    assert -crossing(0.9, 3) < -crossing(0.1, 3)
    # ... and the prediction for budget 9 puts the slow one ahead, as it will be.
    assert s.predicted_loss(slow, 3) < s.predicted_loss(fast, 3)
    assert s.predicted_loss(slow, 3) == pytest.approx(-crossing(0.1, 9), abs=1e-3)
    assert s.predicted_loss(fast, 1) is None  # its latest result is at 3
    # The joint model ranks budget 3's points by the same prediction.
    assert np.argsort(s.effective_losses(3)[:12]).tolist() == np.argsort(s._y[9][:12]).tolist()
    assert s.predicted_loss(fast, 3) is not None
    off = trained(extrapolate=False)
    off.live[fast] = {"x": 0.9, "z": 0.5}
    report(off, fast, lambda b: crossing(0.9, b), [1, 3])
    assert off.predicted_loss(fast, 3) is None
    assert np.array_equal(off.effective_losses(3), off._y[3][:off._n[3]])


def test_no_extrapolation_where_the_rise_is_noise():
    rng = np.random.default_rng(3)
    noise = {}

    def flat(x, step):  # curves that do not cross: the level already ranks them, the rise is noise
        return x * step + (0.3 * noise.setdefault(x, rng.normal()) if step == 1 else 0.0)

    s = trained(n=30, curve=flat)
    assert s.curve_fit(3) is None
    assert np.array_equal(s.effective_losses(3), s._y[3][:s._n[3]])


def test_a_budget_that_ranks_the_other_way_gets_no_weight():
    def reversed_at_1(x, step):
        return -x if step == 1 else x * step

    s = trained(n=20, curve=reversed_at_1, extrapolate=False)
    factor = s.agreements({b: s.effective_losses(b) for b in (1, 3)})
    assert factor[1] == 0.0 and factor[3] == pytest.approx(1.0)
    good, bad = s.joint_model()
    assert len(good.data) + len(bad.data) == 40  # budgets 3 and 9 only
    # Without AGREEMENT every budget is in the model.
    s2 = trained(n=20, curve=reversed_at_1, extrapolate=False, agreement=False)
    good, bad = s2.joint_model()
    assert len(good.data) + len(bad.data) == 60


def test_hpbandsters_model_ignores_the_curves():
    s = trained(model="hpbandster")
    assert not s.extrapolate and not s.use_agreement
    s.live[1000] = {"x": 0.9, "z": 0.5}
    report(s, 1000, lambda b: crossing(0.9, b), [1, 3])
    assert s.predicted_loss(1000, 3) is None


def test_the_curves_survive_a_state_round_trip():
    s = trained()
    s.live[1000] = {"x": 0.1, "z": 0.5}
    report(s, 1000, lambda b: crossing(0.1, b), [1, 3])
    t = BOHBSearcher(SPACE, seed=5)
    t.load_state_dict(pickle.loads(pickle.dumps(s.state_dict())))
    t.live[1000] = {"x": 0.1, "z": 0.5}
    assert t.predicted_loss(1000, 3) == s.predicted_loss(1000, 3)
    assert [s.suggest(i) for i in range(2000, 2010)] == [t.suggest(i) for i in range(2000, 2010)]
    # A state saved before the curves were kept loads, with nothing to extrapolate from yet.
    old = s.state_dict()
    del old["curves"], old["last"]
    u = BOHBSearcher(SPACE, seed=5)
    u.load_state_dict(old)
    assert u.curve_fit(3) is None and u.predicted_loss(1000, 3) is None
    u.suggest(3000)


def test_the_schedulers_rank_a_rung_by_the_prediction():
    s = trained()
    s.live[1000] = {"x": 0.1, "z": 0.5}
    report(s, 1000, lambda b: crossing(0.1, b), [1, 3])
    trial = SimpleNamespace(id=1000)
    for sched in (BOHBScheduler(s, max_steps=9, min_budget=1, eta=3),
                  BOHBAsyncScheduler(s, max_steps=9, reduction_factor=3)):
        assert sched._rung_score(trial, 3, crossing(0.1, 3)) == -s.predicted_loss(1000, 3)
        assert sched._rung_score(trial, 1, 0.25) == 0.25  # no prediction at a budget it is not at


class Crossing(Curve):
    def step(self):
        self.steps += 1
        return {"score": crossing(self.params["x"], self.steps), "steps": self.steps}


def test_a_search_over_crossing_curves_promotes_the_slow_learners(tmp_path):
    def run(extrapolate, name):
        cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
            "NAME": name, "TRAINABLE": "noop", "NUM_TRIALS": 90, "MAX_STEPS": 9, "REPORTERS": [], "SEED": 1,
            "CHECKPOINT_FREQ": 0, "SCHEDULER": "bohb", "SPACE": {"x": {"uniform": [0.0, 1.0]}},
            "BOHB": {"ETA": 3, "MIN_BUDGET": 1, "EXTRAPOLATE": extrapolate}}}
        exp = Experiment(cfg)
        drive(exp, Crossing, concurrency=1)
        finished = [t.params["x"] for t in exp.trials.values() if t.last_result and t.last_result["step"] == 9]
        exp.close()
        return float(np.median(finished))

    # The slow learners (small x) win at the end: with the curves, they are the ones run to it.
    on, off = run(True, "on"), run(False, "off")
    assert on < 0.2 < off, (on, off)


def test_the_adaptive_bandwidth_starts_wide_and_narrows_as_points_come():
    from reidplug.plugins.searchers.bohb import KDE

    levels = np.array([0, 3])
    few = np.column_stack([0.5 + 0.001 * np.arange(4), [0, 1, 2, 0]])
    assert KDE(few, levels, 1e-3).bw[0] < 0.01
    wide = KDE(few, levels, 1e-3, adaptive=True)
    assert wide.bw[0] == pytest.approx(1 / 5) and wide.bw[1] == KDE(few, levels, 1e-3).bw[1]
    many = np.column_stack([0.5 + 1e-5 * np.arange(400), np.zeros(400)])
    assert KDE(many, levels, 1e-3, adaptive=True).bw[0] == pytest.approx(1 / 100)
    # Weighted points count by their effective number.
    w = np.r_[np.ones(2), np.full(2, 1e-9)]
    assert KDE(few, levels, 1e-3, w, adaptive=True).bw[0] == pytest.approx(1 / 3, rel=1e-6)
    # The searcher's joint model uses it unless told not to (and hpbandster's model never does).
    s, plain = trained(), trained(adaptive_bandwidth=False)
    assert s.joint_model()[0].bw[0] > plain.joint_model()[0].bw[0]
    assert not trained(model="hpbandster").adaptive_bandwidth


def test_balanced_budgets_keep_the_many_small_budget_results_from_outvoting_the_largest():
    # Budget 1 ranks the other way round from budget 9 and holds most of the points, as
    # with eta 3; curves and agreement are off, so only the budgets' weights differ.
    def model(balance):
        s = BOHBSearcher(SPACE, seed=0, extrapolate=False, agreement=False, balance_budgets=balance)
        s.set_budgets([1, 9])
        for tid, x in enumerate(np.linspace(0.0, 1.0, 68)):
            s.live[tid] = {"x": float(x), "z": 0.5}
            report(s, tid, lambda b: -x if b == 1 else x - 1, [1] if tid % 8 else [1, 9])
        good, _ = s.joint_model()
        return float(good.weights @ good.data[:, 0])

    # The good density's centre: pulled towards budget 9's winners (large x) when balanced.
    balanced, unbalanced = model(True), model(False)
    assert balanced > 0.5 > unbalanced + 0.1, (balanced, unbalanced)
    assert not BOHBSearcher(SPACE, model="hpbandster").balance_budgets


def test_the_curves_refit_only_when_the_largest_budget_has_grown(monkeypatch):
    import reidplug.plugins.searchers._curves as curves

    s = trained(n=240)  # more trials at the largest budget than _REFIT_ALWAYS
    fits = []
    real = curves.CurveFit.fit.__func__
    monkeypatch.setattr(curves.CurveFit, "fit", classmethod(lambda cls, *a: fits.append(1) or real(cls, *a)))
    s._fits.clear()
    first = s.curve_fit(3)
    assert first is not None and fits == [1]
    # New results at the smaller budgets, and a few at the largest: the same fit, no refitting.
    for tid in range(5000, 5005):
        s.live[tid] = {"x": 0.5, "z": 0.5}
        report(s, tid, lambda b: crossing(0.5, b), [1, 3, 9])
    for tid in range(6000, 6020):
        s.live[tid] = {"x": 0.2, "z": 0.5}
        report(s, tid, lambda b: crossing(0.2, b), [1, 3])
    assert s.curve_fit(3) is first and fits == [1]
    # A resumed search keeps ranking with the fit it had, not one on the rows it has since.
    restored = BOHBSearcher(SPACE, seed=0)
    restored.set_budgets([1, 3, 9])
    restored.load_state_dict(pickle.loads(pickle.dumps(s.state_dict())))
    assert np.array_equal(restored.curve_fit(3).beta, first.beta)
    assert restored.predicted_loss(6000, 3) == pytest.approx(s.predicted_loss(6000, 3))
    assert len(fits) == 2  # the restored searcher's one refit, on the rows the fit had
    # Once the largest budget has grown by 5 %, the fit is refreshed.
    for tid in range(7000, 7012):
        s.live[tid] = {"x": 0.3, "z": 0.5}
        report(s, tid, lambda b: crossing(0.3, b), [1, 3, 9])
    assert s.curve_fit(3) is not first and len(fits) == 3
