"""docs/plugins.md is right for a stranger: its Python blocks run, and its examples work in a search."""

from __future__ import annotations

import importlib.util
import json
import re
import types
from pathlib import Path

import pytest

from reidplug.core import manager
from reidplug.core import state as state_codec
from reidplug.core.hookspecs import hookimpl
from reidplug.core.space import SearchSpace

PAGE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", PAGE.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture(scope="module")
def page():
    """The page's Python blocks run in order in one module, as a reader would paste them."""
    module = types.ModuleType("plugins_doc_examples")
    for block in python_blocks():
        exec(compile(block, str(PAGE), "exec"), module.__dict__)
    return module


def test_the_blocks_run_and_define_the_examples(page):
    assert len(python_blocks()) >= 7
    for name in ("register_searchers", "MySearcher", "to_optuna", "from_optuna", "OptunaTPE", "MedianStopping",
                 "BestSoFar"):
        assert hasattr(page, name), name


SPACE = SearchSpace.parse({
    "c": {"choice": [[1, 2], "b", 3]}, "u": {"uniform": [0.0, 1.0]}, "lu": {"loguniform": [1e-4, 1e-1]},
    "qu": {"quniform": [0, 10, 2]}, "qlu": {"qloguniform": [1.0, 100.0, 0.5]}, "ri": {"randint": [2, 5]},
}, schema=False)


def _drive(searcher, ids, finish):
    out = {tid: searcher.suggest(tid) for tid in ids}
    for tid in finish:
        params = out[tid]
        searcher.on_complete(tid, {"score": params["u"] - params["ri"]}, error=False)
    return out


def test_the_optuna_example_maps_every_domain_and_resumes_exactly(page):
    # Optuna is a benchmark peer (`make bench-deps`), not an extra of the project: skipped without it
    pytest.importorskip("optuna")
    point = {"c": "b", "u": 0.5, "lu": 0.01, "qu": 4, "qlu": 2.5, "ri": 3}
    first = page.OptunaTPE(SPACE, seed=1, max_concurrent=2, points_to_evaluate=[point], n_startup_trials=2)
    seen = _drive(first, range(6), finish=[1, 0, 3, 2])  # out of order; 4 and 5 stay running
    assert seen[0] == point
    for params in seen.values():
        assert SPACE.contains(params), params
        assert isinstance(params["ri"], int) and isinstance(params["qu"], int) and isinstance(params["u"], float)
    saved = state_codec.loads(state_codec.dumps(first.state_dict()))
    resumed = page.OptunaTPE(SPACE, seed=1, max_concurrent=2, points_to_evaluate=[point], n_startup_trials=2)
    resumed.load_state_dict(saved)
    for searcher in (first, resumed):
        searcher.on_complete(5, {"score": 0.0})
    assert [resumed.suggest(t) for t in (6, 7, 8)] == [first.suggest(t) for t in (6, 7, 8)]


def test_the_examples_run_a_search_together(page, tmp_path):
    # without Optuna (not a project dependency) the search runs the builtin random searcher
    has_optuna = importlib.util.find_spec("optuna") is not None

    class Examples:
        @hookimpl
        def register_searchers(self, register):
            register("optuna", page.OptunaTPE, description="Optuna TPE")

        @hookimpl
        def register_schedulers(self, register):
            register("median", page.MedianStopping, description="median stopping")

        @hookimpl
        def register_reporters(self, register):
            register("best_so_far", page.BestSoFar, description="the best result so far")

    manager.reset_plugin_manager()
    manager.plugin_manager().register(Examples(), name="docs-examples")
    from reidplug.core.tuner import Tuner

    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "doc", "TRAINABLE": "trainables_for_tests:quadratic", "NUM_TRIALS": 6, "MAX_CONCURRENT": 2,
        "MAX_STEPS": 3, "SEARCHER": "optuna" if has_optuna else "random", "SCHEDULER": "median",
        "REPORTERS": ["best_so_far"], "BEST_SO_FAR": {"FILE": "best.json"},
        "MEDIAN": {"GRACE_PERIOD": 1, "MIN_SAMPLES": 1}, "SPACE": {"x": {"uniform": [0.0, 1.0]}},
        **({"OPTUNA": {"N_STARTUP_TRIALS": 2}} if has_optuna else {}),
    }}
    tuner = Tuner(cfg)
    summary = tuner.run()
    assert summary["num_trials"] == 6
    best = json.loads((tmp_path / "doc" / "best.json").read_text())
    assert best["trial"] == summary["best_trial"]
    assert best["value"] == pytest.approx(summary["best_result"]["score"])
    # quadratic's scores rank the trials the same at every step: some fall below the median early
    stopped = tuner.experiment.scheduler.stopped
    assert any(tuner.experiment.trials[t].step < 3 for t in stopped), stopped
