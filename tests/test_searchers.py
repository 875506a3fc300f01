"""Searchers (random, grid, hyperopt, nevergrad, skopt): ask/tell, types, warm start, seeds, state, errors."""

from __future__ import annotations

import importlib.util
import itertools
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from optional import need

from reidplug.core.errors import ConfigError
from reidplug.core.manager import get_plugin_manager
from reidplug.core.options import resolve_options
from reidplug.core.space import SearchSpace

CONTRIB = Path(__file__).resolve().parents[1] / "plugins_contrib" / "reidplug-skopt" / "reidplug_skopt" / "__init__.py"
MILESTONES = [40, 90]
SPACE = {
    "opt": {"choice": ["sgd", "adam", MILESTONES]},
    "lr": {"loguniform": [1e-5, 1e-1]},
    "x": {"uniform": [0, 15]},  # integer bounds: values must still be floats
    "bs": {"quniform": [16, 128, 16]},
    "wd": {"qloguniform": [1e-5, 1e-2, 1e-5]},
    "k": {"randint": [2, 9]},
}
# Small settings so that the tests reach the models' own suggestions quickly.
FAST = {
    "random": {},
    "grid": {"points_per_dim": 3},
    "hyperopt": {"n_startup_jobs": 4},
    "nevergrad": {"budget": 40},
    "skopt": {"n_initial_points": 10, "base_estimator": "ET"},  # a model fit costs about a second
}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """The model fits here use tiny matrices, which BLAS threads only slow down on a busy machine."""
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


def _skopt_class():
    need("skopt")
    spec = importlib.util.spec_from_file_location("reidplug_skopt_under_test", CONTRIB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SkoptSearcher


def searcher_class(name):
    if name == "skopt":
        return _skopt_class()
    return get_plugin_manager(entry_points=False).registry("searcher").get(name)


def make(name, space=None, **kwargs):
    space = SearchSpace.parse(space or SPACE, schema=False)
    return searcher_class(name)(space, **{**FAST[name], **kwargs})


def objective(p) -> float:
    """Lower is better; best at adam, lr 1e-3, x 3, bs 64, k 4."""
    return ((math.log10(p["lr"]) + 3) ** 2 + (p["x"] - 3) ** 2 / 10 + (p["k"] - 4) ** 2 / 4
            + (0 if p["opt"] == "adam" else 1) + (p["bs"] - 64) ** 2 / 2000 + p["wd"])


def result(p):
    if set(p) == set(SPACE):
        return {"score": -objective(p)}
    return {"score": -sum(v for v in p.values() if isinstance(v, (int, float)))}  # the smaller spaces


def run(s, n, start=0):
    """Sequential ask/tell: n suggestions, each completed before the next."""
    out = []
    for tid in range(start, start + n):
        p = s.suggest(tid)
        out.append(p)
        s.on_complete(tid, result(p))
    return out


def check_point(p):
    space = SearchSpace.parse(SPACE, schema=False)
    assert space.contains(p), p
    assert p["opt"] in ("sgd", "adam", MILESTONES)
    if isinstance(p["opt"], list):
        assert p["opt"] == MILESTONES
    assert type(p["lr"]) is float and type(p["x"]) is float and type(p["wd"]) is float
    assert type(p["bs"]) is int and p["bs"] % 16 == 0
    assert type(p["k"]) is int and 2 <= p["k"] < 9


def observations(s) -> int:
    """How many completed trials the searcher's model has learned from."""
    name = type(s).__name__
    if name == "HyperoptSearcher":
        from hyperopt import JOB_STATE_DONE

        return sum(d["state"] == JOB_STATE_DONE for d in s._trials.trials)
    if name == "NevergradSearcher":
        return s._opt.num_tell
    if name == "SkoptSearcher":
        return len(s._opt.yi) + len(s._told)
    return -1


# skopt fits a model per suggestion (about a second here), so its cases are the slow ones.
ALL = ["random", "grid", "hyperopt", "nevergrad", pytest.param("skopt", marks=pytest.mark.slow)]
MODEL_BASED = ["hyperopt", "nevergrad", "skopt"]


@pytest.mark.parametrize("name", ALL)
def test_several_outstanding_then_told_out_of_order(name):
    s = make(name, seed=1, max_concurrent=4)
    asked = {tid: s.suggest(tid) for tid in range(4)}
    assert len({repr(sorted(p.items())) for p in asked.values()}) == 4  # four different points
    assert set(s.live) == {0, 1, 2, 3}
    for tid in (2, 0, 3, 1):
        s.on_complete(tid, result(asked[tid]))
    assert s.live == {}
    if name in MODEL_BASED:
        assert observations(s) == 4
    for batch in ((4, 5, 6, 7), (8, 9, 10, 11)):  # and it keeps going, four at a time
        for tid in batch:
            check_point(s.suggest(tid))
        for tid in reversed(batch):
            s.on_complete(tid, result(s.live[tid]))
    assert s.live == {}


@pytest.mark.parametrize("name", ALL)
def test_values_in_the_domain_with_the_right_types(name):
    s = make(name, seed=2)
    points = run(s, 16)
    for p in points:
        check_point(p)
    if name in ("random", "hyperopt"):
        assert any(isinstance(p["opt"], list) for p in points)


@pytest.mark.parametrize("name", ALL)
def test_warm_start_points_come_first_and_are_learned(name):
    points = [
        {"opt": "adam", "lr": 1e-3, "x": 3.0, "bs": 64, "wd": 1e-5, "k": 4},
        {"opt": MILESTONES, "lr": 1e-2, "x": 7.5, "bs": 32, "wd": 2e-5, "k": 8},
    ]
    s = make(name, seed=3, points_to_evaluate=points, max_concurrent=2)
    assert s.suggest(0) == points[0] and s.suggest(1) == points[1]
    s.on_complete(1, result(points[1]))
    s.on_complete(0, result(points[0]))
    p = s.suggest(2)
    check_point(p)
    assert p not in points
    if name in MODEL_BASED:
        assert observations(s) == 2


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_suggestions(name):
    shuffle = {"shuffle": True} if name == "grid" else {}
    first = run(make(name, seed=7, **shuffle), 12)  # past every model's random start
    assert run(make(name, seed=7, **shuffle), 12) == first
    assert run(make(name, seed=8, **shuffle), 12) != first


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_continues_identically(name):
    a = make(name, seed=5, max_concurrent=2)
    run(a, 6)
    p6, p7 = a.suggest(6), a.suggest(7)
    a.on_complete(6, result(p6))
    blob = pickle.dumps(a.state_dict())
    b = make(name, seed=5, max_concurrent=2)
    b.load_state_dict(pickle.loads(blob))
    assert b.live == {7: p7}
    for s in (a, b):
        s.on_complete(7, result(p7))
    assert run(b, 4, start=8) == run(a, 4, start=8)


@pytest.mark.parametrize("name", ALL)
def test_failed_and_unscored_trials_are_tolerated(name):
    s = make(name, seed=6, max_concurrent=3)
    outcomes = [(None, True), ({"score": math.nan}, False), ({}, False), ({"other": 1.0}, False)]
    for tid, (res, error) in enumerate(outcomes):
        check_point(s.suggest(tid))
        s.on_complete(tid, res, error=error)
    s.on_complete(999, None, error=True)  # never suggested by this searcher (e.g. a rejected config)
    good = run(s, 6, start=10)
    for tid in range(20, 23):
        check_point(s.suggest(tid))
        s.on_complete(tid, None, error=True)
    for p in run(s, 4, start=30):
        check_point(p)
    assert good and s.live == {}


@pytest.mark.parametrize("name", ["nevergrad", "skopt"])
@pytest.mark.filterwarnings("ignore:COBYLA")  # NGOpt picks Cobyla for this 1-D space
def test_failures_are_told_as_worse_than_the_worst(name):
    s = make(name, seed=9, space={"x": {"uniform": [0.0, 1.0]}})
    told = []
    real_tell = s._opt.tell

    def spy(points, losses):  # nevergrad: tell(candidate, loss); skopt: tell(xs, ys)
        told.extend(losses if isinstance(losses, list) else [losses])
        return real_tell(points, losses)

    s._opt.tell = spy
    s.suggest(0)
    s.on_complete(0, None, error=True)  # nothing known yet: nevergrad gets a huge loss, skopt nothing
    first = [1.0e20] if name == "nevergrad" else []
    assert told == first
    del told[:]
    losses = []
    for tid in (1, 2, 3):
        p = s.suggest(tid)
        losses.append(p["x"])
        s.on_complete(tid, {"score": -p["x"]})
    s.suggest(4)
    s.on_complete(4, {"score": math.inf})
    s.suggest(5)  # skopt tells what completed at the next suggestion
    worst, best = max(losses), min(losses)
    assert told[:3] == pytest.approx(losses) and len(told) == 4
    assert told[3] == pytest.approx(worst + max(worst - best, 0.1 * abs(worst), 1e-6)) and told[3] > worst


# ---------------------------------------------------------------- grid


def test_grid_is_the_cartesian_product_then_finished():
    space = {"a": {"choice": ["x", [1, 2]]}, "lr": {"loguniform": [1e-4, 1e-2]}, "k": {"randint": [0, 4]},
             "u": {"uniform": [0, 1]}}
    s = make("grid", space=space, max_concurrent=3)
    got = []
    while (p := s.suggest(len(got))) is not None:
        got.append(p)
        s.on_complete(len(got) - 1, {"score": 1.0})
    assert len(got) == s.size == 2 * 3 * 4 * 3 and s.finished
    axes = [["x", [1, 2]], [1e-4, 1e-3, 1e-2], [0, 1, 2, 3], [0.0, 0.5, 1.0]]
    expected = [dict(zip(space, combo)) for combo in itertools.product(*axes)]
    assert [p["a"] for p in got] == [e["a"] for e in expected]
    assert [p["k"] for p in got] == [e["k"] for e in expected]
    np.testing.assert_allclose([p["lr"] for p in got], [e["lr"] for e in expected], rtol=1e-12)
    np.testing.assert_allclose([p["u"] for p in got], [e["u"] for e in expected])
    assert s.suggest(100) is None  # stays finished


def test_grid_values_per_domain():
    from reidplug.plugins.searchers.grid import grid_values

    space = SearchSpace.parse({
        "big": {"randint": [0, 100]}, "q": {"quniform": [0, 1, 0.5]}, "qi": {"quniform": [32, 128, 32]},
        "few": {"randint": [3, 12]},
    }, schema=False)
    assert grid_values(space["big"], 3) == [16, 50, 83]
    assert grid_values(space["q"], 5) == [0.0, 0.5, 1.0]  # quantizing merged neighbours
    assert grid_values(space["qi"], 3) == [32, 64, 128] and all(type(v) is int for v in grid_values(space["qi"], 3))
    assert grid_values(space["few"], 3) == list(range(3, 12))  # short integer ranges in full
    assert grid_values(space["big"], 200) == list(range(100))


def test_grid_shuffle_is_a_seeded_permutation_and_warm_points_come_first():
    space = {"a": {"choice": [1, 2, 3]}, "u": {"uniform": [0, 1]}}
    warm = {"a": 2, "u": 0.25}
    in_order = run(make("grid", space=space), 9)
    s = make("grid", space=space, shuffle=True, seed=4, points_to_evaluate=[warm])
    assert s.suggest(0) == warm and not s.finished
    shuffled = run(s, 9, start=1)
    assert s.finished and s.suggest(50) is None
    assert shuffled != in_order and sorted(map(repr, shuffled)) == sorted(map(repr, in_order))
    assert run(make("grid", space=space, shuffle=True, seed=4), 9) == shuffled


def test_grid_ends_an_experiment_when_exhausted(tmp_path):
    from reidplug.core.tuner import Tuner

    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "grid", "TRAINABLE": "trainables_for_tests:quadratic", "NUM_TRIALS": 50, "MAX_CONCURRENT": 2,
        "MAX_STEPS": 3, "REPORTERS": ["jsonl"], "SEARCHER": "grid", "GRID": {"POINTS_PER_DIM": 4},
        "SPACE": {"x": {"uniform": [0.0, 0.6]}},
    }}
    summary = Tuner(cfg).run()
    assert summary["num_trials"] == 4


# ---------------------------------------------------------------- hyperopt


def test_hyperopt_counts_pending_documents_like_hyperopt(monkeypatch):
    from hyperopt import rand, tpe

    calls = []
    real = rand.suggest
    monkeypatch.setattr(tpe.rand, "suggest", lambda *a, **k: calls.append(1) or real(*a, **k))
    s = make("hyperopt", space={"x": {"uniform": [0.0, 1.0]}}, seed=0, n_startup_jobs=5, max_concurrent=8)
    for tid in range(5):
        s.suggest(tid)
    assert s.pending == 5 and len(calls) == 5
    s.suggest(5)  # five running documents count towards N_STARTUP_JOBS: this one is TPE's
    assert len(calls) == 5 and s.pending == 6


def test_hyperopt_concentrates_near_the_optimum_after_startup():
    near = 0
    for seed in range(3):
        s = make("hyperopt", space={"x": {"uniform": [0.0, 1.0]}}, seed=seed, n_startup_jobs=10, mode="min")
        for tid in range(40):
            p = s.suggest(tid)
            near += tid >= 10 and abs(p["x"] - 0.8) < 0.15
            s.on_complete(tid, {"score": (p["x"] - 0.8) ** 2})
    # Of 90 uniform draws about 27 (30 %) land that close; a random searcher passes 40 with p < 0.002.
    assert near >= 40


def test_hyperopt_sequential_run_equals_hyperopts_own_fmin():
    from hyperopt import Trials, fmin, hp, tpe

    def loss(x, c):
        return (x - 0.3) ** 2 + (0.0 if c == "b" else 0.5)

    space = {"x": {"uniform": [0.0, 1.0]}, "c": {"choice": ["a", "b", "c"]}}
    s = make("hyperopt", space=space, seed=11, n_startup_jobs=5, mode="min")
    ours = []
    for tid in range(15):
        p = s.suggest(tid)
        ours.append((p["x"], p["c"]))
        s.on_complete(tid, {"score": loss(p["x"], p["c"])})
    trials = Trials()
    fmin(lambda p: loss(p["x"], p["c"]), {"x": hp.uniform("x", 0, 1), "c": hp.choice("c", ["a", "b", "c"])},
         algo=lambda *a, **k: tpe.suggest(*a, n_startup_jobs=5, **k), max_evals=15, trials=trials,
         rstate=np.random.default_rng(11), show_progressbar=False)
    theirs = [(t["misc"]["vals"]["x"][0], ["a", "b", "c"][t["misc"]["vals"]["c"][0]]) for t in trials.trials]
    assert ours == theirs


def test_hyperopt_records_errors_as_failed_documents():
    from hyperopt import JOB_STATE_DONE, JOB_STATE_ERROR

    s = make("hyperopt", seed=0)
    for tid in range(3):
        s.suggest(tid)
    s.on_complete(0, None, error=True)
    s.on_complete(1, {"score": math.nan})
    s.on_complete(2, {"score": 1.0})
    docs = [s._docs[tid] for tid in sorted(s._docs)]
    assert [d["state"] for d in docs] == [JOB_STATE_ERROR, JOB_STATE_ERROR, JOB_STATE_DONE]
    assert docs[2]["result"]["loss"] == -1.0 and "loss" not in docs[0]["result"]
    assert len(s._trials.trials) == 1  # as under fmin, TPE does not see error documents
    state = pickle.loads(pickle.dumps(s.state_dict()))
    b = make("hyperopt", seed=0)
    b.load_state_dict(state)
    assert run(b, 3, start=3) == run(s, 3, start=3)
    assert sorted(b._docs) == list(range(6))  # numbering continues past the error documents


def test_hyperopt_options_come_from_the_config_section():
    cls = searcher_class("hyperopt")
    opts = resolve_options(cls, {"N_STARTUP_JOBS": 3, "GAMMA": 0.3}, key="TUNE.HYPEROPT")
    s = cls(SearchSpace.parse(SPACE, schema=False), **opts)
    assert (s.n_startup_jobs, s.gamma, s.n_ei_candidates) == (3, 0.3, 24)
    with pytest.raises(ValueError, match="GAMMA"):
        cls(SearchSpace.parse(SPACE, schema=False), gamma=1.5)


# ---------------------------------------------------------------- nevergrad


def test_nevergrad_unknown_optimizer_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as info:
        make("nevergrad", optimizer="NGopt")
    message = str(info.value)
    assert info.value.key == "TUNE.NEVERGRAD.OPTIMIZER" and "\n" not in message
    assert "'NGopt'" in message and "NGOpt" in message.split("close matches:")[1]


def test_nevergrad_named_optimizer_budget_and_workers():
    s = make("nevergrad", optimizer="TwoPointsDE", budget=None, num_trials=30, max_concurrent=4, seed=0)
    assert s._opt.name == "TwoPointsDE" and s._opt.budget == 30 and s._opt.num_workers == 4
    for p in run(s, 8):
        check_point(p)
    assert make("nevergrad", budget=12)._opt.budget == 12


def test_nevergrad_never_has_more_than_num_workers_unanswered():
    s = make("nevergrad", seed=0, max_concurrent=2)
    a, b = s.suggest(0), s.suggest(1)
    assert a and b and s.suggest(2) is None  # not now: nevergrad was promised two workers
    s.on_complete(0, result(a))
    check_point(s.suggest(2))


def test_nevergrad_survives_an_algorithm_that_fails_to_propose():
    s = make("nevergrad", seed=0)
    real_ask, calls = s._opt.ask, []

    def flaky():  # as NGOpt's MetaModel does under numpy >= 2.4
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("only 0-dimensional arrays can be converted to Python scalars")
        return real_ask()

    s._opt.ask = flaky
    with pytest.warns(RuntimeWarning, match="failed to propose a point"):
        p = s.suggest(0)
    check_point(p)
    s.on_complete(0, result(p))
    assert s._opt.num_ask == 1 and s._opt.num_tell == 1  # the random point was asked and told
    check_point(s.suggest(1))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:COBYLA")  # scipy corrects a tolerance nevergrad passes it
def test_nevergrad_sequential_scipy_optimizer_replays_and_lets_the_process_exit():
    """Cobyla runs scipy in a thread that waits for each answer: state and exit must still work."""
    import subprocess
    import sys
    import textwrap

    space = {"x": {"uniform": [0.0, 1.0]}, "y": {"uniform": [-1.0, 1.0]}}
    a = make("nevergrad", space=space, optimizer="Cobyla", budget=30, seed=2)
    run(a, 5)
    p5 = a.suggest(5)
    b = make("nevergrad", space=space, optimizer="Cobyla", budget=30, seed=2)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    assert b.live == {5: p5}
    for s in (a, b):
        s.on_complete(5, result(p5))
    assert run(b, 4, start=6) == run(a, 4, start=6)
    a.close(), b.close()
    with pytest.raises(ConfigError, match="one trial at a time"):
        make("nevergrad", space=space, optimizer="Cobyla", max_concurrent=2)
    # A module-level searcher with a trial still running, never closed: the interpreter must exit.
    code = textwrap.dedent("""
        from reidplug.core.space import SearchSpace
        from reidplug.plugins.searchers.nevergrad import NevergradSearcher
        space = SearchSpace.parse({"x": {"uniform": [0.0, 1.0]}}, schema=False)
        s = NevergradSearcher(space, optimizer="Cobyla", budget=10, seed=0)
        s.suggest(0)
        s.on_complete(0, {"score": 1.0})
        s.suggest(1)
        print("asked")
    """)
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "asked" in done.stdout


# ---------------------------------------------------------------- registration


def test_builtin_searchers_are_registered_by_name():
    registry = get_plugin_manager(entry_points=False).registry("searcher")
    for name, module in [("grid", "grid"), ("hyperopt", "hyperopt"), ("nevergrad", "nevergrad")]:
        entry = registry.entry(name)
        assert entry.owner == f"searchers.{module}" and entry.description
        assert entry.load().__module__ == f"reidplug.plugins.searchers.{module}"
    assert registry.get("grid").OPTIONS == {"POINTS_PER_DIM": 3, "SHUFFLE": False}
    assert registry.get("nevergrad").OPTIONS["OPTIMIZER"] == "NGOpt"
