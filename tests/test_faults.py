"""Worker faults, corrupt checkpoints and checkpoint retention."""

from __future__ import annotations

import csv
import json

from reidplug.core.experiment import Experiment
from reidplug.core.journal import Journal
from reidplug.core.tuner import Tuner


def cfg(tmp_path, **tune):
    base = {"NAME": "exp", "TRAINABLE": "trainables_for_tests:DiesOnce", "NUM_TRIALS": 2, "MAX_CONCURRENT": 2,
            "MAX_STEPS": 4, "REPORTERS": [], "SPACE": {"x": {"uniform": [0.0, 1.0]}}}
    base.update(tune)
    return {"OUTPUT_DIR": str(tmp_path), "TUNE": base}


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_killed_worker_is_retried_from_its_checkpoint(tmp_path):
    summary = Tuner(cfg(tmp_path, MAX_FAILURES=1)).run()
    assert summary["status"] == {"TERMINATED": 2}
    journal = Journal(tmp_path / "exp" / "experiment.db")
    retries = journal.events("retry")
    assert sorted(e["trial_id"] for e in retries) == [1, 2]
    assert all("killed by signal 9" in e["message"] for e in retries)
    for tid in (1, 2):
        steps = [json.loads(line)["step"] for line in open(tmp_path / "exp" / f"trial_{tid:04d}" / "metrics.jsonl")]
        assert steps == [1, 2, 3, 4]  # restarted from the step-1 checkpoint; nothing reported twice
        counts = [json.loads(line)["count"] for line in open(tmp_path / "exp" / f"trial_{tid:04d}" / "metrics.jsonl")]
        assert counts == [1, 2, 3, 4]  # the count came back from the checkpoint, not from zero
    trials = journal.load_trials()
    assert all(t.num_failures == 1 for t in trials.values())


def test_worker_faults_beyond_max_failures_end_in_error(tmp_path):
    summary = Tuner(cfg(tmp_path, TRAINABLE="trainables_for_tests:AlwaysDies", MAX_FAILURES=2, NUM_TRIALS=3)).run()
    assert summary["status"] == {"ERROR": 3}
    for r in rows(tmp_path / "exp" / "results.csv"):
        assert "killed by signal 9" in r["error"]
    journal = Journal(tmp_path / "exp" / "experiment.db")
    assert len(journal.events("retry")) == 6 and len(journal.events("error")) == 3


def _save(exp, trial, step, text):
    from reidplug.core import checkpoints

    path = exp.checkpoint_path(trial, step)
    staging = checkpoints.staging_dir(path)
    staging.mkdir(parents=True)
    (staging / "state.txt").write_text(text)
    checkpoints.finalize(staging, path)
    return path


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    exp = Experiment(cfg(tmp_path, TRAINABLE="noop", NUM_TRIALS=1, MAX_STEPS=5, KEEP_CHECKPOINTS=2))
    try:
        trial = exp.ask()
        for step in (1, 2, 3):
            exp.tell(trial, {"score": step}, checkpoint=_save(exp, trial, step, f"state at step {step}"))
        live = [step for _, step, _ in exp.journal.checkpoints(trial.id)]
        assert live == [2, 3]
        newest = exp.dir / exp.journal.checkpoints(trial.id)[-1][2] / "state.txt"
        newest.write_text("state at step 3"[:-3])  # truncated
        good = exp.good_checkpoint(trial)
        assert good is not None and good.endswith("step_00002") and trial.checkpoint_step == 2
        events = exp.journal.events("corrupt_checkpoint")
        assert len(events) == 1 and "truncated" in events[0]["problem"] and "step_00003" in events[0]["path"]
        newest.write_text("STATE AT STEP 3")  # same size, other bytes
        exp.journal.set_checkpoint_status(events[0]["path"], "live")
        assert exp.good_checkpoint(trial).endswith("step_00002")
    finally:
        exp.close()


def test_running_trial_keeps_its_last_checkpoints_only(tmp_path):
    Tuner(cfg(tmp_path, TRAINABLE="trainables_for_tests:Counter", NUM_TRIALS=3, MAX_STEPS=5,
              KEEP_CHECKPOINTS=2)).run()
    journal = Journal(tmp_path / "exp" / "experiment.db")
    live = journal.checkpoints()
    best = json.loads((tmp_path / "exp" / "summary.json").read_text())["best_trial"]
    # Steps 1-4 are saved (CHECKPOINT_FREQ 1); a finished trial's last step is not, and a
    # finished trial keeps nothing unless it is the best.
    assert [(tid, step) for tid, step, _ in live] == [(best, 4)]
    assert len(journal.checkpoints(status="deleted")) == 3 * 4 - 1
    on_disk = sorted(p.name for p in (tmp_path / "exp").glob("trial_*/checkpoints/*"))
    assert on_disk == ["step_00004"]


def test_storage_holds_checkpoints_apart_from_the_journal(tmp_path):
    storage = tmp_path / "shared"
    Tuner(cfg(tmp_path / "local", TRAINABLE="trainables_for_tests:DiesOnce", NUM_TRIALS=2, MAX_STEPS=4,
              MAX_FAILURES=1, STORAGE=str(storage))).run()
    assert (tmp_path / "local" / "exp" / "experiment.db").exists()
    assert not list((tmp_path / "local" / "exp").glob("trial_*/checkpoints/*"))
    saved = list((storage / "exp").glob("trial_*/checkpoints/step_*"))
    assert saved and all((p / "MANIFEST.json").exists() for p in saved)
    journal = Journal(tmp_path / "local" / "exp" / "experiment.db")
    assert all((storage / "exp" / rel).exists() for _, _, rel in journal.checkpoints())
    # the retry after the kill restored from shared storage
    assert [json.loads(x)["count"] for x in open(tmp_path / "local" / "exp" / "trial_0001" / "metrics.jsonl")] == [1, 2, 3, 4]


def test_a_pause_waiting_for_its_save_is_journaled_paused(tmp_path):
    """PAUSE without a checkpoint at hand: the worker still has to save. The journal says PAUSED at
    once (restartable from the last checkpoint), so a crash before the save cannot let the trial run on."""
    from reidplug.core.scheduler import Scheduler
    from reidplug.core.trial import Decision, TrialStatus

    class PauseAtTwo(Scheduler):
        def on_result(self, trial, result):
            return Decision.PAUSE if result["step"] == 2 else Decision.CONTINUE

    config = cfg(tmp_path, TRAINABLE="trainables_for_tests:Counter", NUM_TRIALS=1, MAX_STEPS=4)
    exp = Experiment(config)
    exp.scheduler = PauseAtTwo(exp.searcher, max_steps=4)
    exp.scheduler.setup(exp)
    trial = exp.ask()
    exp.tell(trial, {"score": 1.0}, step=1, checkpoint=_save(exp, trial, 1, "state at step 1"))
    assert exp.tell(trial, {"score": 2.0}, step=2) == Decision.PAUSE
    assert trial.status == TrialStatus.RUNNING  # its worker is saving: nobody may resume it yet
    row = Journal(tmp_path / "exp" / "experiment.db").load_trials()[trial.id]
    assert row.status == TrialStatus.PAUSED and row.restore_from.endswith("step_00001")
    exp.close()  # the process dies before the save arrives

    again = Experiment(config, resume=True)
    try:
        resumed = again.trials[trial.id]
        assert resumed.status == TrialStatus.PAUSED and resumed.step == 2
        assert resumed.restore_from.endswith("step_00001") and resumed not in again._restarts
    finally:
        again.close()
