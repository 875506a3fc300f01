"""The skopt searcher: registration, entry point, options, ask/tell with a constant liar, state."""

from __future__ import annotations

import importlib.metadata
import math
import os
import pickle

import pytest
import reidplug_skopt
from reidplug_skopt import SkoptSearcher

from reidplug.core import state as state_data
from reidplug.core.errors import ConfigError, UserError
from reidplug.core.options import resolve_options
from reidplug.core.space import SearchSpace

SPACE = SearchSpace.parse({"x": {"uniform": [-2.0, 2.0]}, "c": {"choice": ["a", "b"]}}, schema=False)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """GP fits on a few points are slower with BLAS threads competing for the cores."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    with threadpool_limits(1):
        yield


def score(p):
    return {"score": -(p["x"] - 1.0) ** 2 - (p["c"] == "b")}


def installed() -> bool:
    try:
        importlib.metadata.distribution("reidplug-skopt")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_the_hook_registers_the_searcher():
    seen = {}
    reidplug_skopt.register_searchers(register=lambda name, factory, **kw: seen.update({name: (factory, kw)}))
    assert seen["skopt"][0] is SkoptSearcher and seen["skopt"][1]["description"]


@pytest.mark.skipif(not installed(), reason="needs the package installed (pip install .)")
def test_found_through_its_entry_point():
    from reidplug.core.manager import get_plugin_manager

    pm = get_plugin_manager()
    assert pm.registry("searcher").get("skopt") is SkoptSearcher
    origin = pm.origins["skopt"]
    assert (origin.distribution, origin.builtin, origin.components) == ("reidplug-skopt", False, {"searcher": ["skopt"]})


def test_options_come_from_tune_skopt_and_are_checked():
    opts = resolve_options(SkoptSearcher, {"N_INITIAL_POINTS": 3, "ACQ_FUNC": "EI"}, key="TUNE.SKOPT")
    assert opts == {"base_estimator": "GP", "n_initial_points": 3, "acq_func": "EI", "acq_optimizer": "auto"}
    SkoptSearcher(SPACE, **opts)
    with pytest.raises(ConfigError) as info:
        SkoptSearcher(SPACE, acq_func="UCB")
    assert info.value.key == "TUNE.SKOPT.ACQ_FUNC"


def test_gp_finds_the_optimum():
    s = SkoptSearcher(SPACE, seed=0, n_initial_points=5, acq_optimizer="sampling")
    found = []
    for tid in range(10):
        p = s.suggest(tid)
        found.append(p)
        s.on_complete(tid, score(p))
    best = max(found[5:], key=lambda p: score(p)["score"])
    assert best["c"] == "a" and abs(best["x"] - 1.0) < 0.1


def test_outstanding_suggestions_spread_out():
    s = SkoptSearcher(SPACE, seed=1, n_initial_points=4, max_concurrent=2, acq_optimizer="sampling")
    for tid in range(4):
        s.on_complete(tid, score(s.suggest(tid)))
    first, second = s.suggest(4), s.suggest(5)
    # Untold, a fitted skopt.Optimizer proposes the same point again; the liar moves the second one.
    assert s._opt.ask() == s._xs[4]
    assert (first["c"], round(first["x"], 6)) != (second["c"], round(second["x"], 6))
    s.on_complete(5, score(second))
    s.on_complete(4, score(first))
    s.suggest(6)
    assert len(s._opt.yi) == 6


def journaled(state):
    """A state as the journal gives it back: plain data only, no class admitted."""
    return state_data.loads(state_data.dumps(state))


def test_state_round_trip_and_failures():
    a = SkoptSearcher(SPACE, seed=2, n_initial_points=3, max_concurrent=2, base_estimator="ET")
    a.suggest(0)
    a.on_complete(0, None, error=True)  # before any finite loss: not told
    for tid in range(1, 4):
        a.on_complete(tid, score(a.suggest(tid)))
    a.suggest(4)
    p5 = a.suggest(5)
    a.on_complete(4, {"score": math.nan})  # told as worse than the worst
    b = SkoptSearcher(SPACE, seed=2, n_initial_points=3, max_concurrent=2, base_estimator="ET")
    b.load_state_dict(journaled(a.state_dict()))
    for s in (a, b):
        s.on_complete(5, score(p5))
    assert [b.suggest(t) for t in (6, 7)] == [a.suggest(t) for t in (6, 7)]
    a._flush()
    assert len(a._opt.yi) == 5 and a._opt.yi[3] > max(a._opt.yi[:3])


def test_resume_continues_exactly_in_the_random_start_and_after_several_fits():
    """Random-start asks advance the optimizer's RNG, and gp_hedge's gains add up over the
    fits: both must come back from the state, whatever the new instance's own seed."""
    def make(seed):
        return SkoptSearcher(SPACE, seed=seed, n_initial_points=2, max_concurrent=2, base_estimator="ET",
                             acq_optimizer="sampling")

    def resumed(a):
        b = make(None)
        b.load_state_dict(journaled(a.state_dict()))
        return b

    a = make(3)
    a.suggest(0)  # a random point, asked of the optimizer itself
    b = resumed(a)
    for s in (a, b):
        s.on_complete(0, score(s.live[0]))
    assert [b.suggest(1)] == [a.suggest(1)]

    for tid in range(1, 5):  # fits at suggestions 2, 3 and 4
        a.on_complete(tid, score(a.live[tid]))
        if tid < 4:
            a.suggest(tid + 1)
    p5 = a.suggest(5)
    a.suggest(6)  # from the liar
    a.on_complete(5, score(p5))
    b = resumed(a)
    assert b._opt.gains_.tolist() == a._opt.gains_.tolist() and b._opt.gains_.any()
    for s in (a, b):
        s.on_complete(6, score(s.live[6]))
    assert [b.suggest(t) for t in (7, 8)] == [a.suggest(t) for t in (7, 8)]
    assert b._opt.gains_.tolist() == a._opt.gains_.tolist() and b._opt.Xi == a._opt.Xi


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_state_holding_a_pickle_is_refused_and_runs_nothing(tmp_path):
    a = SkoptSearcher(SPACE, seed=4, n_initial_points=2)
    a.on_complete(0, score(a.suggest(0)))
    crafted = {**a.state_dict(), "optimizer": pickle.dumps(_RunsCode(tmp_path / "ran"))}  # 0.1.0's form
    b = SkoptSearcher(SPACE, seed=4, n_initial_points=2)
    with pytest.raises(UserError, match="pickled optimizer"):
        b.load_state_dict(journaled(crafted))
    assert not (tmp_path / "ran").exists()


def test_a_state_that_does_not_fit_is_one_user_error():
    a = SkoptSearcher(SPACE, seed=4, n_initial_points=2)
    a.on_complete(0, score(a.suggest(0)))
    good = journaled(a.state_dict())
    outside = {**good, "optimizer": {**good["optimizer"], "Xi": [[5.0, 0]], "yi": [1.0]}}
    other = SkoptSearcher(SPACE, seed=4, n_initial_points=3)
    for target, state in ((SkoptSearcher(SPACE, seed=4, n_initial_points=2), outside), (other, good)):
        with pytest.raises(UserError) as info:
            target.load_state_dict(state)
        assert "\n" not in str(info.value) and "skopt searcher's state" in str(info.value)
