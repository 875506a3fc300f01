"""Each crash window, hit exactly: the run SIGKILLs itself at a named point (REIDPLUG_FAULT),
is resumed, and must end as the uninterrupted run does, with every derived file in step with
the journal."""

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
  NUM_TRIALS: {trials}
  MAX_CONCURRENT: 1
  MAX_STEPS: 4
  SEED: 5
  KEEP_CHECKPOINTS: 1
  MAX_FAILURES: 1
  REPORTERS: [jsonl]
  SPACE:
    x: {{uniform: [0.0, 1.0]}}
{extra}"""

ASHA = """\
  SCHEDULER: asha
  ASHA: {TYPE: promotion, GRACE_PERIOD: 1, REDUCTION_FACTOR: 2}
"""

pytestmark = pytest.mark.slow


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REIDPLUG_FAULT")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["REIDPLUG_TEST_DELAY"] = env.get("REIDPLUG_TEST_DELAY", "0")
    env.update(extra)
    return env


def _cli(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reidplug", *map(str, args), "--quiet", "--no-report"],
                          env=_env(**env), capture_output=True, text=True, timeout=180)


def _config(root: Path, *, trials: int = 3, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "search.yml"
    cfg.write_text(CONFIG.format(out=root, trials=trials, extra=extra))
    return cfg


def _db(folder: Path):
    return sqlite3.connect(folder / "experiment.db")


def facts(folder: Path) -> dict:
    """What an uninterrupted run and a killed-and-resumed one must agree on."""
    conn = _db(folder)
    try:
        trials = {tid: (json.loads(params), status, step) for tid, params, status, step in
                  conn.execute("SELECT id, params, status, step FROM trials")}
        steps: dict[int, list[int]] = {}
        for tid, step in conn.execute("SELECT trial_id, step FROM results ORDER BY seq"):
            steps.setdefault(tid, []).append(step)
    finally:
        conn.close()
    summary = json.loads((folder / "summary.json").read_text())
    return {"trials": trials, "steps": steps, "best": (summary["best_trial"], summary["best_params"])}


def events(folder: Path, kind: str) -> list[dict]:
    conn = _db(folder)
    try:
        return [json.loads(d) for (d,) in conn.execute("SELECT data FROM events WHERE kind = ? ORDER BY seq", (kind,))]
    finally:
        conn.close()


def assert_files_match_the_journal(folder: Path) -> None:
    """metrics.jsonl of each trial and results.jsonl: each journaled result once, nothing else."""
    conn = _db(folder)
    try:
        rows = [json.loads(m) for (m,) in conn.execute("SELECT metrics FROM results ORDER BY seq")]
    finally:
        conn.close()
    key = lambda r: (r["trial_id"], r["step"], r["timestamp"])  # noqa: E731
    lines = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    assert [key(r) for r in lines] == [key(r) for r in rows], "results.jsonl differs from the journal"
    for tid in {r["trial_id"] for r in rows}:
        own = [json.loads(x) for x in (folder / f"trial_{tid:04d}" / "metrics.jsonl").read_text().splitlines()]
        assert [key(r) for r in own] == [key(r) for r in rows if r["trial_id"] == tid], f"trial {tid}'s metrics.jsonl"


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp-*"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted runs, by scheduler."""
    out = {}
    for name, extra in (("fifo", ""), ("asha", ASHA)):
        root = tmp_path_factory.mktemp(f"reference-{name}")
        cfg = _config(root, trials=8 if name == "asha" else 3, extra=extra)
        proc = _cli("run", cfg)
        assert proc.returncode == 0, proc.stderr
        out[name] = facts(root / "exp")
    return out


_CRASHED: dict = {}


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """kill at `fault`, plant what a killed save and a killed write leave, resume; cached per fault."""

    def get(fault: str, scheduler: str = "fifo") -> Path:
        if (fault, scheduler) in _CRASHED:
            return _CRASHED[fault, scheduler]
        root = tmp_path_factory.mktemp("crash")
        cfg = _config(root, trials=8 if scheduler == "asha" else 3, extra=ASHA if scheduler == "asha" else "")
        killed = _cli("run", cfg, REIDPLUG_FAULT=fault)
        assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
        folder = root / "exp"
        staging = folder / "trial_0001" / "checkpoints" / "step_00009.tmp-424242"
        staging.mkdir(parents=True)
        (staging / "count.txt").write_text("9")
        (folder / "trial_0001" / "checkpoints" / "step_00008").mkdir()  # saved, its result never committed
        (folder / ".summary.json.tmp-424242").write_text("{")
        resumed = _cli("run", cfg, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        _CRASHED[fault, scheduler] = folder
        return folder

    return get


def test_a_kill_before_the_commit_that_prunes_keeps_the_newer_checkpoint(reference, crashed):
    # The 3rd result (trial 1, step 3) saves step 3 and would prune step 2 (KEEP_CHECKPOINTS 1).
    folder = crashed("commit:result:3")
    assert events(folder, "corrupt_checkpoint") == []
    assert events(folder, "resume")[0]["restored"] == {"1": 2}  # from step 2, not from scratch
    assert facts(folder) == reference["fifo"]


def test_a_kill_before_a_result_commits_leaves_no_duplicate_line(reference, crashed):
    folder = crashed("commit:result:3")
    assert_files_match_the_journal(folder)


def test_a_kill_after_a_result_commits_leaves_no_row_missing(reference, crashed):
    folder = crashed("committed:result:3")
    assert_files_match_the_journal(folder)
    assert facts(folder) == reference["fifo"]


def test_a_kill_between_a_pause_decision_and_its_effects(reference, crashed):
    # ASHA promotion pauses trials at their rungs; killed right after the 4th pause commits
    # (trial 4 at rung 1, which the uninterrupted run never promotes).
    folder = crashed("decided:pause:4", "asha")
    assert facts(folder) == reference["asha"]  # no trial ran past its rung: the same results, once each
    assert_files_match_the_journal(folder)


def test_resume_removes_what_killed_saves_and_writes_left(crashed):
    folder = crashed("commit:result:3")
    assert leftovers(folder) == []
    assert not (folder / "trial_0001" / "checkpoints" / "step_00008").exists()
    conn = _db(folder)
    try:
        live = [p for (p,) in conn.execute("SELECT path FROM checkpoints WHERE status = 'live'")]
    finally:
        conn.close()
    assert live and all((folder / p / "MANIFEST.json").is_file() for p in live)


def test_a_worker_killed_while_saving_leaves_no_staging_folder(tmp_path, reference):
    cfg = _config(tmp_path)
    # The worker's 2nd save dies between its staging folder and the rename; once only.
    proc = _cli("run", cfg, REIDPLUG_FAULT="checkpoint.staged:2", REIDPLUG_FAULT_MARKER=str(tmp_path / "fired"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fired").exists()
    folder = tmp_path / "exp"
    assert len(events(folder, "retry")) == 1
    assert leftovers(folder) == []
    assert facts(folder) == reference["fifo"]


@pytest.mark.parametrize("fault", ["journal.created", "commit:open"])
def test_resume_works_from_the_moment_the_journal_exists(tmp_path, reference, fault):
    cfg = _config(tmp_path)
    killed = _cli("run", cfg, REIDPLUG_FAULT=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "exp" / "experiment.db").exists()
    resumed = _cli("resume", tmp_path / "exp")
    assert resumed.returncode == 0, resumed.stderr
    assert facts(tmp_path / "exp") == reference["fifo"]


def test_fresh_cannot_move_a_live_run(tmp_path):
    cfg = _config(tmp_path, trials=2)
    live = subprocess.Popen([sys.executable, "-m", "reidplug", "run", str(cfg), "--quiet", "--no-report"],
                            env=_env(REIDPLUG_TEST_DELAY="1.0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    db = tmp_path / "exp" / "experiment.db"
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "exp" / "trial_0001" / "metrics.jsonl").exists():
        time.sleep(0.05)
    assert db.exists() and live.poll() is None
    fresh = _cli("run", cfg, "--fresh")
    _, err = live.communicate(timeout=120)
    assert fresh.returncode == 2 and "another reidplug run" in fresh.stderr, fresh.stderr
    assert live.returncode == 0, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["exp"]  # nothing moved aside
    steps = facts(tmp_path / "exp")["steps"]
    assert steps == {1: [1, 2, 3, 4], 2: [1, 2, 3, 4]}
    assert_files_match_the_journal(tmp_path / "exp")
