"""BOHB's kernel-density model: hpbandster's training sets, densities, sampling, and use by the schedulers."""

from __future__ import annotations

import math
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import norm

from pbt_trainables import Curve, drive
from reidplug.core.errors import ConfigError
from reidplug.core.experiment import Experiment
from reidplug.core.searcher import Searcher
from reidplug.core.space import SearchSpace
from reidplug.core.trial import TrialStatus
from reidplug.plugins.schedulers.bohb import BOHBScheduler
from reidplug.plugins.schedulers.bohb_async import BOHBAsyncScheduler
from reidplug.plugins.searchers.random import RandomSearcher
from reidplug.plugins.searchers.bohb import KDE, BOHBSearcher

SPACE = SearchSpace.parse({
    "x": {"uniform": [0.0, 1.0]},
    "y": {"loguniform": [1e-4, 1e-1]},
    "n": {"randint": [1, 9]},
    "c": {"choice": ["a", "b", "c"]},
}, schema=False)


def loss(params):
    """Best at x = 0.2, y = 1e-3, n = 7, c = 'b'."""
    return ((params["x"] - 0.2) ** 2 + (math.log10(params["y"]) + 3) ** 2 / 9 + (params["n"] - 7) ** 2 / 64
            + (params["c"] != "b") * 0.3)


def feed(searcher, n, budget=9, start=0):
    """Suggest and report n configurations at one budget; returns [(trial id, params, pick)]."""
    out = []
    for tid in range(start, start + n):
        params = searcher.suggest(tid)
        out.append((tid, params, searcher.last_pick))
        searcher.on_result(tid, {"score": -loss(params), "step": budget})
        searcher.on_complete(tid, {"score": -loss(params), "step": budget})
    return out


def test_training_set_sizes_follow_hpbandster():
    s = BOHBSearcher(SPACE, seed=0)
    assert s.min_points == len(SPACE) + 1 == 5
    for n in (5, 9, 10, 33, 34, 100, 1000):
        n_good = max(5, (15 * n) // 100)
        n_bad = max(5, (85 * n) // 100)
        assert s._split(n) == (min(n_good, n), max(min(n_bad, n - n_good), 0))
    # A model needs more than d rows in both sets: 2 * (d + 1) points with the defaults.
    s.set_budgets([9])
    feed(s, 9)
    assert s.model_budgets == set()
    feed(s, 1, start=9)
    assert s.model_budgets == {9}


def test_kde_matches_a_direct_product_kernel():
    rng = np.random.default_rng(1)
    data = np.column_stack([rng.random(12), rng.random(12), rng.integers(0, 3, 12)])
    kde = KDE(data, np.array([0, 0, 3]), 1e-3)
    std = data.std(axis=0)
    bw = 1.06 * std * 12 ** (-1 / 7)
    assert kde.bw[:2] == pytest.approx(bw[:2])
    assert kde.bw[2] == pytest.approx(min(bw[2], 2 / 3))
    for x in rng.random((5, 3)) * [1, 1, 0] + [0, 0, 1]:
        h = kde.bw
        terms = (norm.pdf((x[0] - data[:, 0]) / h[0]) / h[0] * norm.pdf((x[1] - data[:, 1]) / h[1]) / h[1]
                 * np.where(data[:, 2] == x[2], 1 - h[2], h[2] / 2))
        assert math.exp(kde.logpdf(x[None])[0]) == pytest.approx(terms.mean(), rel=1e-9)


def test_random_until_the_model_has_enough_points_then_mostly_model():
    s = BOHBSearcher(SPACE, seed=0)
    s.set_budgets([9])
    first = feed(s, 9)
    assert {pick for _, _, pick in first} == {"random"}
    feed(s, 31, start=9)  # 40 points at budget 9
    picks = feed(s, 300, start=100)
    share = sum(p == "model" for _, _, p in picks) / 300
    assert 0.58 < share < 0.76  # 1 - RANDOM_FRACTION = 2/3


def test_model_suggestions_concentrate_in_the_good_region():
    s = BOHBSearcher(SPACE, seed=3)
    s.set_budgets([9])
    feed(s, 60)
    picks = [(p, pick) for _, p, pick in feed(s, 200, start=100)]
    model = [loss(p) for p, pick in picks if pick == "model"]
    random = [loss(p) for p, pick in picks if pick == "random"]
    assert np.median(model) < 0.5 * np.median(random)
    model_params = [p for p, pick in picks if pick == "model"]
    assert np.mean([p["c"] == "b" for p in model_params]) > 0.7
    assert np.median([abs(p["x"] - 0.2) for p in model_params]) < 0.15
    for p in model_params:  # every suggestion lies in its domains, typed as the domain gives them
        assert SPACE.contains(p) and isinstance(p["n"], int)


def test_the_largest_budget_with_a_model_is_used_and_smaller_ones_are_frozen():
    s = BOHBSearcher(SPACE, seed=0, model="hpbandster")
    s.set_budgets([1, 3, 9])
    feed(s, 30, budget=1)
    assert s.model_budgets == {1}
    feed(s, 10, budget=3, start=100)
    assert s.model_budgets == {1, 3}
    good, _ = s.model()
    assert len(good.data) == 5 and s._n[3] == 10
    before = s._n[1]
    feed(s, 5, budget=1, start=200)
    assert s._n[1] == before  # not modelled any more: a model exists for a larger budget
    s.on_result(999, {"score": 1.0, "step": 2})  # not a budget
    assert 2 not in s._n


def test_crashes_and_non_finite_results_count_as_bad():
    s = BOHBSearcher(SPACE, seed=0)
    s.set_budgets([1, 3])
    params = s.suggest(1)
    s.on_result(1, {"score": 0.5, "step": 1})
    s.on_complete(1, {"score": 0.5, "step": 1}, error=True)  # crashed on its way to budget 3
    assert s._y[3][0] == math.inf and s._y[1][0] == -0.5
    s.suggest(2)
    s.on_result(2, {"score": float("nan"), "step": 1})
    assert s._y[1][1] == math.inf
    assert s.decode(s._X[3][0]) == params


def test_state_round_trip_gives_the_same_suggestions():
    s = BOHBSearcher(SPACE, seed=4)
    s.set_budgets([9])
    feed(s, 25)
    state = pickle.loads(pickle.dumps(s.state_dict()))
    t = BOHBSearcher(SPACE, seed=99)
    t.load_state_dict(state)
    assert [s.suggest(i) for i in range(500, 520)] == [t.suggest(i) for i in range(500, 520)]
    assert s.picks == t.picks


def test_bohb_scheduler_brings_its_model(tmp_path):
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "exp", "TRAINABLE": "noop", "NUM_TRIALS": 40, "MAX_STEPS": 9, "REPORTERS": [], "SEED": 2,
        "CHECKPOINT_FREQ": 0, "SCHEDULER": "bohb", "BOHB": {"ETA": 3, "MIN_BUDGET": 1, "TOP_N_PERCENT": 20},
        "SPACE": {"x": {"uniform": [0.0, 1.0]}}}}
    exp = Experiment(cfg)
    assert isinstance(exp.searcher, BOHBSearcher) and exp.scheduler.searcher is exp.searcher
    assert exp.searcher.top_n_percent == 20 and exp.searcher.budgets == {1, 3, 9}
    drive(exp, Curve, concurrency=2)
    assert exp.searcher.picks["model"] > 5
    model_x = [t.params["x"] for t in exp.trials.values() if t.id > 20]
    assert np.median(np.abs(np.array(model_x) - 0.3)) < 0.2  # Curve is best at x = 0.3
    assert exp.journal.load_state("searcher")["picks"] == exp.searcher.picks
    exp.close()


def test_bohb_refuses_another_searcher():
    class Other(Searcher):
        def _suggest(self, trial_id):
            return {}

    with pytest.raises(ValueError, match="samples with its own model"):
        BOHBScheduler(Other(SPACE), max_steps=9)


def test_bohb_async_runs_asha_with_the_model(tmp_path):
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "exp", "TRAINABLE": "noop", "NUM_TRIALS": 30, "MAX_STEPS": 9, "REPORTERS": [], "SEED": 2,
        "CHECKPOINT_FREQ": 0, "SCHEDULER": "bohb_async", "BOHB_ASYNC": {"REDUCTION_FACTOR": 3, "NUM_SAMPLES": 32},
        "SPACE": {"x": {"uniform": [0.0, 1.0]}}}}
    exp = Experiment(cfg)
    assert exp.searcher.budgets == {1, 3, 9} and exp.searcher.num_samples == 32
    drive(exp, Curve, concurrency=2)
    assert exp.searcher.picks["model"] > 0
    with pytest.raises(ConfigError, match="unknown option"):
        Experiment({**cfg, "TUNE": {**cfg["TUNE"], "NAME": "b", "BOHB_ASYNC": {"ETA": 3}}})
    exp.close()


def test_bohb_searcher_and_scheduler_share_their_section(tmp_path):
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "TRAINABLE": "noop", "MAX_STEPS": 27, "SEARCHER": "bohb", "SCHEDULER": "bohb",
        "BOHB": {"ETA": 3, "MIN_BUDGET": 3, "TOP_N_PERCENT": 25}, "SPACE": {"x": {"uniform": [0.0, 1.0]}}}}
    exp = Experiment(cfg, dry_run=True)
    assert exp.scheduler.searcher is exp.searcher and exp.searcher.top_n_percent == 25
    assert [b["steps"] for b in exp.scheduler.plan()] == [[3, 9, 27], [9, 27], [27]]


def test_joint_model_uses_every_budget_and_weighs_the_larger_ones_more():
    s = BOHBSearcher(SPACE, seed=0)  # MODEL joint, the default
    s.set_budgets([1, 3, 9])
    feed(s, 6, budget=1)
    assert s.model() is None  # 6 points: fewer than twice d + 1 = 10
    feed(s, 6, budget=3, start=100)
    good, bad = s.model()
    # 12 points: hpbandster's split gives 5 good ones, shared out as ceil(6 * 5 / 12) = 3 per budget.
    assert len(good.data) == 6 and len(bad.data) == 6
    # Budget 3 weighs twice budget 1; the weights are normalised.
    assert good.weights == pytest.approx([1 / 9] * 3 + [2 / 9] * 3)
    # The good ones at each budget are that budget's best (lowest losses).
    for b, rows in ((1, good.data[:3]), (3, good.data[3:])):
        order = np.argsort(s._y[b][:6], kind="stable")
        assert np.array_equal(rows, s._X[b][:6][order[:3]])
    # Unlike hpbandster's model, a smaller budget keeps learning once a larger one is modelled.
    feed(s, 30, budget=9, start=200)
    feed(s, 4, budget=1, start=300)
    assert s._n[1] == 10
    picks = [p for _, p, pick in feed(s, 40, budget=9, start=400) if pick == "model"]
    assert len(picks) > 15 and np.median([abs(p["x"] - 0.2) for p in picks]) < 0.15


def test_weighted_kde_equals_a_direct_weighted_mixture():
    rng = np.random.default_rng(1)
    data = np.column_stack([rng.random(7), rng.integers(0, 3, 7)])
    w = np.arange(1.0, 8.0)
    kde = KDE(data, np.array([0, 3]), 1e-3, w)
    x = np.array([[0.3, 1.0], [0.9, 2.0]])
    h, hc = kde.bw
    same = x[:, None, 1] == data[None, :, 1]
    k = norm.pdf((x[:, None, 0] - data[None, :, 0]) / h) / h * np.where(same, 1 - hc, hc / 2)
    assert kde.logpdf(x) == pytest.approx(np.log((k * w / w.sum()).sum(axis=1)))


def test_bohb_async_window_compares_newcomers_with_recent_arrivals(tmp_path):
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "exp", "TRAINABLE": "noop", "NUM_TRIALS": 40, "MAX_STEPS": 9, "REPORTERS": [], "SEED": 2,
        "CHECKPOINT_FREQ": 0, "SCHEDULER": "bohb_async",
        "BOHB_ASYNC": {"REDUCTION_FACTOR": 3, "TYPE": "stop", "WINDOW": 3}, "SPACE": {"x": {"uniform": [0.0, 1.0]}}}}
    exp = Experiment(cfg)
    sched = exp.scheduler
    rung = sched.rungs[0][0]
    for tid, score in enumerate([0.1] * 6 + [0.9, 0.8, 0.7], start=100):
        rung.add(tid, score)
    # Early arrivals were poor, recent ones good: 0.6 passes against the whole rung (its 2/3
    # quantile is 0.3) and stops against the last three (0.83).
    assert rung.quantile(2 / 3) < 0.6 < rung.recent_quantile(2 / 3, 3)
    trial = exp.ask()
    assert exp.tell(trial, {"score": 0.6}, step=1).value == "STOP"
    sched.window = 0  # ASHA's rule: a like score passes against the whole rung
    again = exp.ask()
    assert exp.tell(again, {"score": 0.65}, step=1).value == "CONTINUE"
    exp.close()
    with pytest.raises(ConfigError, match="WINDOW"):
        Experiment({**cfg, "TUNE": {**cfg["TUNE"], "NAME": "b", "BOHB_ASYNC": {"WINDOW": -1}}})


class _Trials:
    """The part of an Experiment that ASHA's promotions read: trials by id, and whether more may start."""

    def __init__(self):
        self.trials, self.more = {}, True

    def can_create(self):
        return self.more


def _arrive(sched, exp, scores, status=TrialStatus.PAUSED):
    rung = sched.rungs[0][0]
    for score in scores:
        tid = len(exp.trials)
        exp.trials[tid] = SimpleNamespace(id=tid, status=status)
        rung.add(tid, score, waiting=True)
    return rung


def _promoted(sched):
    found = sched._find_promotion()
    if found is None:
        return None
    found[1].promote(found[0].id)
    exp = sched.experiment
    exp.trials[found[0].id].status = TrialStatus.RUNNING
    return found[0].id


def test_bohb_async_promotes_from_a_full_cohort_of_recent_arrivals():
    def scheduler(**options):
        sched = BOHBAsyncScheduler(RandomSearcher(SPACE, seed=0), max_steps=9, reduction_factor=3, **options)
        sched.experiment = _Trials()
        return sched

    # 9 steps, eta 3: rungs at 1 and 3 steps; synchronous BOHB's stage sizes are 9 and 3.
    sched = scheduler()
    assert sched.type == "promotion" and [sched._cohort(0, k) for k in (0, 1)] == [9, 3]
    _arrive(sched, sched.experiment, [0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1])
    asha = scheduler(cohorts=False)
    _arrive(asha, asha.experiment, [0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert _promoted(asha) == 0  # ASHA: the best of the first arrivals goes on at once
    assert _promoted(sched) is None  # 8 of 9 arrived: the cohort is not full
    _arrive(sched, sched.experiment, [0.1])
    assert _promoted(sched) == 0
    # Nine more arrivals; the four best are busy elsewhere (not promotable now).
    _arrive(sched, sched.experiment, [0.95] * 4, status=TrialStatus.RUNNING)
    _arrive(sched, sched.experiment, [0.2] * 5)
    _arrive(asha, asha.experiment, [0.1, *[0.95] * 4], status=TrialStatus.RUNNING)
    _arrive(asha, asha.experiment, [0.2] * 5)
    # Trial 1 (0.8) is in the top third of the whole rung (rank 5 of 18), not of the last 9 arrivals.
    assert sched.rungs[0][0].rank(1) == 5 and sched._promotion_floor(0, 0) == pytest.approx(0.95)
    assert _promoted(asha) == 1
    assert _promoted(sched) is None
    # A search that may start no more trials cannot fill a cohort: ASHA's rule over what the rung holds.
    late = scheduler()
    _arrive(late, late.experiment, [0.9, 0.8, 0.1, 0.1])
    assert _promoted(late) is None
    late.experiment.more = False
    assert _promoted(late) == 0


def test_bohb_async_ranks_a_newcomer_within_its_cohort_not_against_the_whole_rung():
    def scheduler(**options):
        sched = BOHBAsyncScheduler(RandomSearcher(SPACE, seed=0), max_steps=9, reduction_factor=3, **options)
        sched.experiment = _Trials()
        return sched

    # The first cohort ran fast (its best went on, the rest are busy or gone); the second is
    # slower at this rung, as the model's proposals are where the small budgets mislead.
    first, second = [0.9] * 9, [0.5, 0.4, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
    got = {}
    for whole_rung in (False, True):
        sched = scheduler(whole_rung=whole_rung)
        _arrive(sched, sched.experiment, first, status=TrialStatus.RUNNING)
        _arrive(sched, sched.experiment, second)
        # Trial 9 (0.5) leads its cohort; in the whole rung it ranks 10th of 18, below the top 6.
        assert sched.rungs[0][0].rank(9) == 9 and sched._promotion_floor(0, 0) == pytest.approx(0.7 / 3)
        got[whole_rung] = [_promoted(sched) for _ in range(4)]
    assert got[False] == [9, 10, 11, None]  # the best third of the latest cohort, as a synchronous stage
    assert got[True] == [None] * 4  # ASHA's rank as well: the whole cohort stops at the first rung
    assert scheduler(cohorts=False)._ranks_whole_rung()


def test_bohb_async_quota_promotes_at_most_a_third_of_the_latest_cohort():
    def scheduler(**options):
        sched = BOHBAsyncScheduler(RandomSearcher(SPACE, seed=0), max_steps=9, reduction_factor=3, **options)
        sched.experiment = _Trials()
        return sched

    got = {}
    for quota in (False, True):
        sched = scheduler(quota=quota)
        # The cohort's best three arrive last and go on; a better newcomer follows at once.
        _arrive(sched, sched.experiment, [0.1] * 6 + [0.9, 0.8, 0.7])
        first = [_promoted(sched) for _ in range(3)]
        _arrive(sched, sched.experiment, [0.95])
        newcomer = _promoted(sched)
        _arrive(sched, sched.experiment, [0.1] * 5)
        blocked = _promoted(sched)
        _arrive(sched, sched.experiment, [0.1])  # trial 6 leaves the window of the last 9 arrivals
        got[quota] = first, newcomer, blocked, _promoted(sched)
    # Without the quota a sliding cohort lets more than a third through: trial 9 goes on at once.
    assert got[False] == ([6, 7, 8], 9, None, None)
    # With it, trial 9 waits until one of the three promoted leaves the last nine arrivals.
    assert got[True] == ([6, 7, 8], None, None, 9)
    # Once no trial may start, the quota saves budget for nobody: a qualifying trial goes on.
    sched = scheduler()
    _arrive(sched, sched.experiment, [0.1] * 6 + [0.9, 0.8, 0.7])
    [_promoted(sched) for _ in range(3)]
    _arrive(sched, sched.experiment, [0.95])
    assert _promoted(sched) is None
    sched.experiment.more = False
    assert _promoted(sched) == 9


def test_bohb_async_brackets_get_hyperbands_shares():
    sched = BOHBAsyncScheduler(RandomSearcher(SPACE, seed=0), max_steps=81, reduction_factor=3, brackets=5)
    got = [sched._bracket(tid) for tid in range(128)]
    # One Hyperband iteration of eta 3 over 1..81 steps: 81, 27, 9, 6 and 5 new configurations.
    assert [got.count(b) for b in range(5)] == [81, 27, 9, 6, 5]
    again = BOHBAsyncScheduler(RandomSearcher(SPACE, seed=0), max_steps=81, reduction_factor=3, brackets=5)
    again.load_state_dict(pickle.loads(pickle.dumps(sched.state_dict())))
    more = [again._bracket(tid) for tid in range(128, 256)]
    assert [more.count(b) for b in range(5)] == [81, 27, 9, 6, 5]


def test_bohb_async_ends_the_trials_that_leave_their_cohort_unpromoted(tmp_path):
    def run(name, cohorts):
        cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
            "NAME": name, "TRAINABLE": "noop", "NUM_TRIALS": 60, "MAX_STEPS": 9, "REPORTERS": [], "SEED": 2,
            "CHECKPOINT_FREQ": 0, "SCHEDULER": "bohb_async",
            "BOHB_ASYNC": {"REDUCTION_FACTOR": 3, "COHORTS": cohorts}, "SPACE": {"x": {"uniform": [0.0, 1.0]}}}}
        exp = Experiment(cfg)
        paused = []
        tell = exp.tell

        def counting(*args, **kwargs):
            decision = tell(*args, **kwargs)
            paused.append(sum(t.status == TrialStatus.PAUSED for t in exp.trials.values()))
            return decision

        exp.tell = counting
        drive(exp, Curve, concurrency=1)
        ended = sum(t.status == TrialStatus.TERMINATED and t.step in (1, 3) for t in exp.trials.values())
        exp.close()
        return max(paused), ended

    most, ended = run("cohorts", True)
    # Paused trials wait only while they are among the latest cohort of their rung: 9 at
    # the first rung and 3 at the second, at most.
    assert most <= 9 + 3 and ended > 30
    asha_most, _ = run("asha", False)
    assert asha_most > 20  # ASHA keeps every unpromoted trial paused until the search ends
