"""SIGKILL the experiment process at several points; --resume must complete it, losing nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

CONFIG = """\
OUTPUT_DIR: {out}
TUNE:
  NAME: exp
  TRAINABLE: trainables_for_tests:Counter
  NUM_TRIALS: 8
  MAX_CONCURRENT: 2
  MAX_STEPS: 4
  SEED: 11
  REPORTERS: [jsonl, csv]
  SPACE:
    x: {{uniform: [0.0, 1.0]}}
    y: {{choice: [a, b, c]}}
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["REIDPLUG_TEST_DELAY"] = "0.05"
    return env


def _start(cfg: Path, *extra):
    return subprocess.Popen([sys.executable, "-m", "reidplug", "run", str(cfg), "--quiet", "--no-report", *extra],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _results(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT trial_id, step, metrics FROM results ORDER BY seq").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def _trials(db: Path) -> dict:
    conn = sqlite3.connect(db)
    try:
        return {tid: (params, status, step) for tid, params, status, step in
                conn.execute("SELECT id, params, status, step FROM trials")}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    cfg = out / "search.yml"
    cfg.write_text(CONFIG.format(out=out))
    proc = _start(cfg)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return _trials(out / "exp" / "experiment.db")


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0, 1, 6, 19])
def test_sigkill_then_resume_completes_the_same_search(tmp_path, reference, kill_after):
    cfg = tmp_path / "search.yml"
    cfg.write_text(CONFIG.format(out=tmp_path))
    db = tmp_path / "exp" / "experiment.db"
    proc = _start(cfg)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if db.exists() and len(_results(db)) >= kill_after:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = _results(db)

    resumed = _start(cfg, "--resume")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err

    after = _results(db)
    assert before == after[: len(before)], "a completed result was lost or rewritten"
    trials = _trials(db)
    assert {t: p for t, (p, _, _) in trials.items()} == {t: p for t, (p, _, _) in reference.items()}
    assert all(status == "TERMINATED" and step == 4 for _, status, step in trials.values())
    per_trial: dict[int, list[int]] = {}
    for tid, step, _ in after:
        per_trial.setdefault(tid, []).append(step)
    assert per_trial == {tid: [1, 2, 3, 4] for tid in trials}, "a step was reported twice or skipped"
    # Counter counts its own steps: equal counts prove restarts loaded the checkpoint.
    assert all(json.loads(m)["count"] == step for _, step, m in after)
