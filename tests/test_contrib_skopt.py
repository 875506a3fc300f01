"""The third-party skopt package, installed for real: found through its entry point only, listed, blockable,
resumed exactly from its journaled state, which holds no code."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from optional import need

need("skopt")

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "plugins_contrib" / "reidplug-skopt"

ASK_TELL = """
import json
from reidplug.core.manager import get_plugin_manager
from reidplug.core.space import SearchSpace

pm = get_plugin_manager()
searchers = pm.registry("searcher")
out = {"names": searchers.names()}
if "skopt" in searchers:
    origin = pm.origins["skopt"]
    out["origin"] = [origin.distribution, origin.version, origin.builtin, origin.components]
    space = SearchSpace.parse({"x": {"uniform": [0.0, 1.0]}, "c": {"choice": ["a", "b"]}}, schema=False)
    s = searchers.get("skopt")(space, seed=0, max_concurrent=2, n_initial_points=2, base_estimator="ET")
    points = []
    for tid in range(4):
        p = s.suggest(tid)
        points.append(p)
        s.on_complete(tid, {"score": p["x"]})
    out["points"] = points
print(json.dumps(out))
"""


def in_plain_environment() -> bool:
    try:
        importlib.metadata.distribution("reidplug-skopt")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The package pip-installed into its own folder, from a copy so that the checkout stays clean."""
    root = tmp_path_factory.mktemp("contrib")
    source = root / "src"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    return target


def _env(site=None, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REIDPLUG_DISABLE_PLUGINS")}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    env.update(extra)
    return env


def _python(code, env, cwd):
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_found_through_its_entry_point_and_runs_ask_tell(site, tmp_path):
    out = _python(ASK_TELL, _env(site), tmp_path)
    assert "skopt" in out["names"]
    assert out["origin"] == ["reidplug-skopt", "0.1.0", False, {"searcher": ["skopt"]}]
    assert len(out["points"]) == 4 and all(0.0 <= p["x"] <= 1.0 and p["c"] in ("a", "b") for p in out["points"])
    assert (site / "reidplug_skopt-0.1.0.dist-info" / "entry_points.txt").read_text().count("skopt = reidplug_skopt")


@pytest.mark.slow
def test_absent_without_the_install_and_blocked_by_name(site, tmp_path):
    blocked = _python(ASK_TELL, _env(site, REIDPLUG_DISABLE_PLUGINS="skopt"), tmp_path)
    assert "skopt" not in blocked["names"] and "random" in blocked["names"]
    if not in_plain_environment():
        assert "skopt" not in _python(ASK_TELL, _env(), tmp_path)["names"]


@pytest.mark.slow
def test_the_cli_lists_it(site, tmp_path):
    done = subprocess.run([sys.executable, "-m", "reidplug", "plugins", "--json"], check=False, capture_output=True, text=True,
                          env=_env(site), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    skopt = rows["skopt"]
    assert {k: skopt[k] for k in ("name", "version", "distribution", "builtin", "components")} == {
        "name": "skopt", "version": "0.1.0", "distribution": "reidplug-skopt", "builtin": False,
        "components": {"searcher": ["skopt"]}}
    assert skopt["details"]["searcher"][0]["description"].startswith("Bayesian optimisation")
    assert rows["searchers.hyperopt"]["builtin"] and rows["searchers.hyperopt"]["components"] == {
        "searcher": ["hyperopt"]}


@pytest.mark.slow
def test_the_packages_own_tests_pass_against_the_install(site, tmp_path):
    tests = tmp_path / "tests"
    shutil.copytree(PACKAGE / "tests", tests, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)], check=False,
                          capture_output=True, text=True, env=_env(site), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout  # the entry-point test ran too


SEARCH = """\
OUTPUT_DIR: {out}
TUNE:
  NAME: exp
  TRAINABLE: trainables_for_tests:Counter
  SEARCHER: skopt
  SKOPT: {{BASE_ESTIMATOR: ET, N_INITIAL_POINTS: 2, ACQ_OPTIMIZER: sampling}}
  NUM_TRIALS: {trials}
  MAX_CONCURRENT: 1
  MAX_STEPS: 2
  SEED: 5
  REPORTERS: []
  SPACE:
    x: {{uniform: [0.0, 1.0]}}
    c: {{choice: [a, b]}}
"""


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _search(site, root: Path, trials: int, *args) -> tuple[subprocess.CompletedProcess, Path]:
    cfg = root / "search.yml"
    cfg.write_text(SEARCH.format(out=root, trials=trials))
    env = _env(site)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(TESTS)])
    done = subprocess.run([sys.executable, "-m", "reidplug", "run", str(cfg), "--quiet", "--no-report", *args],
                          check=False, capture_output=True, text=True, env=env, cwd=root, timeout=300)
    return done, root / "exp" / "experiment.db"


def _params(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT params FROM trials ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.slow
def test_a_resumed_search_continues_exactly_and_a_crafted_state_runs_nothing(site, tmp_path):
    from reidplug.core import state

    (tmp_path / "whole").mkdir()
    (tmp_path / "split").mkdir()
    whole, whole_db = _search(site, tmp_path / "whole", 4)
    assert whole.returncode == 0, whole.stderr
    first, db = _search(site, tmp_path / "split", 2)
    assert first.returncode == 0, first.stderr
    again, _ = _search(site, tmp_path / "split", 4, "--resume", "TUNE.NUM_TRIALS=4")
    assert again.returncode == 0, again.stderr
    assert _params(db) == _params(whole_db) and len(set(_params(db))) == 4  # two of them from a fitted model

    # A folder from elsewhere whose skopt state holds a pickle (the form reidplug-skopt 0.1.0 stored).
    conn = sqlite3.connect(db)
    with conn:
        blob = conn.execute("SELECT blob FROM state WHERE component = 'searcher'").fetchone()[0]
        crafted = {**state.loads(blob), "optimizer": pickle.dumps(_RunsCode(tmp_path / "ran"))}
        conn.execute("UPDATE state SET blob = ? WHERE component = 'searcher'", (state.dumps(crafted),))
    conn.close()
    refused, _ = _search(site, tmp_path / "split", 5, "--resume", "TUNE.NUM_TRIALS=5")
    assert not (tmp_path / "ran").exists(), "the state ran code"
    assert refused.returncode == 2, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "pickled optimizer" in errors[0] and "Traceback" not in refused.stderr, refused.stderr
    assert len(_params(db)) == 4
