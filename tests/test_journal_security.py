"""An experiment folder received from someone else: resuming it runs no code from it and
touches nothing outside it."""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reidplug.core import state
from reidplug.core.experiment import Experiment
from reidplug.core.journal import Journal
from reidplug.core.searcher import Searcher

TESTS = Path(__file__).parent

CONFIG = """\
OUTPUT_DIR: {out}
TUNE:
  NAME: exp
  TRAINABLE: trainables_for_tests:Counter
  NUM_TRIALS: {trials}
  MAX_STEPS: 3
  REPORTERS: []
  SPACE:
    x: {{uniform: [0.0, 1.0]}}
"""


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REIDPLUG_FAULT")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "reidplug", *map(str, args), "--quiet", "--no-report"],
                          env=env, capture_output=True, text=True, timeout=180, cwd=cwd)


def _experiment(root: Path, trials: int = 2) -> Path:
    cfg = root / "search.yml"
    cfg.write_text(CONFIG.format(out=root, trials=trials))
    proc = _cli("run", cfg)
    assert proc.returncode == 0, proc.stderr
    return cfg


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(db: Path, component: str, blob: bytes) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE state SET blob = ? WHERE component = ?", (blob, component))
    conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["resume DIR", "run --resume"])
@pytest.mark.parametrize("form", ["pickle", "tagged"])
def test_a_crafted_state_runs_nothing(tmp_path, how, form):
    cfg = _experiment(tmp_path)
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"points": [], "live": {}, "x": _RunsCode(marker)})
    if form == "tagged":  # the current format, with an object smuggled in as a pickle
        evil = state.MAGIC + b'{"points":[],"live":{},"x":{"$p":"' + __import__("base64").b64encode(evil) + b'"}}'
    _plant(tmp_path / "exp" / "experiment.db", "searcher", evil)
    proc = _cli("resume", tmp_path / "exp") if how == "resume DIR" else _cli("run", cfg, "--resume")
    assert not marker.exists(), "the journal ran code"
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "experiment.db: the searcher's state: refused to load" in errors[0] and "system" in errors[0]


@pytest.mark.slow
def test_checkpoint_paths_outside_the_folder_are_never_touched(tmp_path):
    cfg = _experiment(tmp_path)
    victim = tmp_path / "victim"
    (victim / "step_00001").mkdir(parents=True)
    (victim / "keep.txt").write_text("mine")
    (victim / "step_00001" / "keep.txt").write_text("mine too")
    folder = tmp_path / "exp"
    # Rows that climb out, and one that goes out through a symbolic link planted in the folder;
    # a link among the checkpoint folders, which the collection of leftovers must not follow.
    os.symlink(victim, folder / "trial_0002" / "link")
    (folder / "trial_0001" / "checkpoints").mkdir(parents=True, exist_ok=True)
    os.symlink(victim, folder / "trial_0001" / "checkpoints" / "step_00007")
    rows = [(1, "../victim"), (2, f"../../{tmp_path.name}/victim"), (2, "trial_0002/link/step_00001")]
    conn = sqlite3.connect(folder / "experiment.db")
    with conn:
        conn.executemany("INSERT INTO checkpoints VALUES (?, 1, ?, 'live', 0)", rows)
    conn.close()
    # One more trial: its results prune, and pruning once visits every trial's checkpoints.
    proc = _cli("run", cfg, "--resume", "TUNE.NUM_TRIALS=3")
    assert proc.returncode == 0, proc.stderr
    assert (victim / "keep.txt").read_text() == "mine"
    assert (victim / "step_00001" / "keep.txt").read_text() == "mine too"
    refused = Journal(folder / "experiment.db").events("refused_path")
    assert sorted(e["path"] for e in refused) == sorted(path for _, path in rows)


def _combos():
    return [("random", "fifo"), ("grid", "fifo"), ("hyperopt", "asha"), ("nevergrad", "hyperband"),
            ("bohb", "bohb"), ("random", "pbt"), ("random", "bohb_async")]


@pytest.mark.parametrize("searcher,scheduler", _combos())
def test_builtin_states_are_plain_data(tmp_path, searcher, scheduler):
    pytest.importorskip({"hyperopt": "hyperopt", "nevergrad": "nevergrad"}.get(searcher, "numpy"))
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "exp", "TRAINABLE": "trainables_for_tests:Counter", "NUM_TRIALS": 6, "MAX_STEPS": 4,
        "REPORTERS": [], "SEARCHER": searcher, "SCHEDULER": scheduler,
        "SPACE": {"x": {"uniform": [0.0, 1.0]}, "y": {"choice": ["a", "b"]}}}}
    exp = Experiment(cfg)
    try:
        for i in range(4):
            trial = exp.ask()
            if trial is None:
                break
            exp.tell(trial, {"score": float(i)}, step=1)
        for component in ("searcher", "scheduler"):
            (blob,) = exp.journal.conn.execute("SELECT blob FROM state WHERE component = ?", (component,)).fetchone()
            assert blob.startswith(state.MAGIC) and b'"$p"' not in blob  # no pickle anywhere
            assert state.dumps(state.loads(blob)) == blob  # and it comes back exactly, types included
    finally:
        exp.close()


def test_the_codec_keeps_types_and_refuses_objects():
    value = {"ints": {1: 2.5, 3: float("nan")}, "tuple": (1, "a", None), "set": {1, 2}, "bytes": b"\x00\x01",
             "array": np.arange(6, dtype=np.float32).reshape(2, 3), "scalar": np.int64(7), "$odd": [True],
             "rng": np.random.default_rng(3).bit_generator.state}
    back = state.loads(state.dumps(value))
    assert back["ints"][1] == 2.5 and np.isnan(back["ints"][3]) and back["tuple"] == (1, "a", None)
    assert back["set"] == {1, 2} and back["bytes"] == b"\x00\x01" and back["$odd"] == [True]
    assert back["array"].dtype == np.float32 and back["array"].tolist() == value["array"].tolist()
    assert type(back["scalar"]) is np.int64 and back["rng"] == value["rng"]
    with pytest.raises(state.StateError, match="STATE_TYPES"):
        state.dumps({"f": _RunsCode("x")})
    with pytest.raises(state.StateError, match="not plain data"):
        state.dumps({"a": np.array([object()], dtype=object)})


class _Model:
    """Stands for a library object a plugin cannot express as plain data."""

    def __init__(self, weights):
        self.weights = weights


class DeclaringSearcher(Searcher):
    STATE_TYPES = (f"{__name__}:_Model",)

    def _suggest(self, trial_id):
        return {"x": 0.5}

    def state_dict(self):
        return {**super().state_dict(), "model": _Model([1.0, 2.0])}

    def load_state_dict(self, s):
        super().load_state_dict(s)
        self.model = s["model"]


def test_a_plugin_declares_the_classes_its_state_holds():
    allowed = state.declared_types(DeclaringSearcher)
    blob = state.dumps(DeclaringSearcher(None).state_dict(), allowed)
    assert isinstance(state.loads(blob, allowed)["model"], _Model)
    with pytest.raises(state.StateError, match="refused to load .*_Model"):
        state.loads(blob)  # another component, which did not declare it


def test_an_older_journal_of_plain_pickles_still_loads():
    old = pickle.dumps({"points": [{"x": 1}], "live": {3: {"x": 0.2}}, "rng": (1, 2), "s": {4}})
    assert state.loads(old) == {"points": [{"x": 1}], "live": {3: {"x": 0.2}}, "rng": (1, 2), "s": {4}}
