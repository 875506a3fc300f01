"""Console, JSONL and CSV reporters; the install hint of the optional ones; the progress helper."""

from __future__ import annotations

import io
import json
import sqlite3
import sys

import pytest
from test_report import build_varied_experiment, read_csv

from reidplug.core import progress
from reidplug.core.errors import ConfigError
from reidplug.core.experiment import Experiment
from reidplug.core.trial import Decision

PROGRESS = {"loss": 0.5, "lr": 3.5e-4, "iter_per_s": 12.5}


def simple_cfg(tmp_path, **tune):
    base = {"NAME": "exp", "TRAINABLE": "noop", "NUM_TRIALS": 3, "MAX_STEPS": 2, "REPORTERS": ["console"],
            "SPACE": {"x": {"uniform": [0.0, 1.0]}}}
    base.update(tune)
    return {"OUTPUT_DIR": str(tmp_path), "TUNE": base}


def run_ask_tell(cfg, fail=()):
    exp = Experiment(cfg)
    exp.start_experiment()
    while (trial := exp.ask()) is not None:
        if trial.id in fail:
            exp.fail(trial, f"trial {trial.id} blew up")
            continue
        while exp.tell(trial, {"score": trial.params["x"] + trial.step, "epoch": trial.step + 1,
                               **PROGRESS}) == Decision.CONTINUE:
            pass
    return exp, exp.finish()


def journal_rows(exp_dir, query):
    conn = sqlite3.connect(f"file:{exp_dir / 'experiment.db'}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


# ---------------------------------------------------------------------- console


def test_console_plain_lines_are_throttled_and_honest(tmp_path, capsys):
    exp, summary = run_ask_tell(simple_cfg(tmp_path, CONSOLE={"EVERY_S": 3600.0}))
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out  # no control codes in a log
    lines = out.splitlines()
    assert all(line.startswith("[reidplug] ") for line in lines)
    assert lines[0].startswith("[reidplug] experiment 'exp'") and "up to 3 trials" in lines[0]
    assert sum("started:" in line for line in lines) == 3
    done = [line for line in lines if " completed at step 2" in line]
    assert len(done) == 3
    for trial in exp.trials.values():
        assert any(f"trial {trial.id} completed at step 2: score={trial.last_result['score']:.4g}" in line for line in done)
    # One status block in an hour: the first result's, with the trial's training progress.
    status = [line for line in lines if " trials: " in line]
    assert len(status) == 2  # that block and the final line
    assert "trial 1: step 1/2, epoch 1, loss 0.5, lr 3.50e-04, 12.5 it/s, score=" in out
    best = exp.best_trial()
    assert status[-1].startswith("[reidplug] 3/3 trials: 3 done | best score=") and f"(trial {best.id})" in status[-1]


def test_console_every_result_when_every_s_is_zero(tmp_path, capsys):
    run_ask_tell(simple_cfg(tmp_path, CONSOLE={"EVERY_S": 0.0}))
    out = capsys.readouterr().out
    assert sum(" trials: " in line for line in out.splitlines()) == 3 * 2 + 1


def test_console_quiet_prints_only_errors(tmp_path, capsys):
    run_ask_tell(simple_cfg(tmp_path, CONSOLE={"QUIET": True}), fail=(2,))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "[reidplug] trial 2 failed: trial 2 blew up"


def test_console_shows_paused_stopped_and_failed_trials(tmp_path, capsys):
    build_varied_experiment(tmp_path, reporters=("console",), CONSOLE={"EVERY_S": 3600.0})
    captured = capsys.readouterr()
    out = captured.out
    assert "trial 1 paused at step 2 (rung 1): score=" in out
    assert "trial 3 stopped at step 2 (below the median): score=" in out
    assert "trial 5 resumed at step 6" in out  # after the exploit, from its donor's step
    assert "trial 7 failed: CUDA out of memory (simulated)" in captured.err
    assert out.splitlines()[-1].startswith("[reidplug] 8/8 trials: 1 stopped, 6 done, 1 failed | best score=")


def test_console_live_table(tmp_path, capsys):
    run_ask_tell(simple_cfg(tmp_path, CONSOLE={"LIVE": "on"}), fail=(3,))
    out = capsys.readouterr().out
    # Not a terminal: rich prints the final table once when the live display stops.
    assert "3/3 trials: 2 done, 1 failed" in out
    for word in ("trial", "status", "epoch", "loss", "speed", "score", "best", "params", "12.5 it/s"):
        assert word in out
    assert "failed" in out and "done" in out


def test_console_eta_from_trials_and_time_budget(tmp_path, capsys):
    from reidplug.plugins.reporters.console import ConsoleReporter

    exp = Experiment(simple_cfg(tmp_path, NUM_TRIALS=4, REPORTERS=[]))
    rep = ConsoleReporter(exp, every_s=3600.0)
    exp.reporters = [rep]
    exp.start_experiment()
    for _ in range(2):
        trial = exp.ask()
        while exp.tell(trial, {"score": 1.0}) == Decision.CONTINUE:
            pass
    # Two of four trials ended in 10 s: two more take 10 s.
    assert rep.eta_s(now=rep._started + 10.0) == pytest.approx(10.0)
    exp.cfg.TUNE.TIME_BUDGET_S = 3.0
    assert rep.eta_s(now=rep._started + 10.0) <= 3.0
    exp.finish()


def test_console_bad_option_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"TUNE.CONSOLE.LIVE: must be auto, on or off"):
        Experiment(simple_cfg(tmp_path, CONSOLE={"LIVE": "sometimes"}), dry_run=True)


# ---------------------------------------------------------------------- jsonl and csv


def test_jsonl_and_csv_rows_match_the_journal(tmp_path):
    exp_dir = build_varied_experiment(tmp_path, reporters=("jsonl", "csv"))
    journal = journal_rows(exp_dir, "SELECT trial_id, step, metrics FROM results ORDER BY seq")
    jsonl = [json.loads(line) for line in (exp_dir / "results.jsonl").read_text().splitlines()]
    progress_rows = read_csv(exp_dir / "progress.csv")
    assert len(jsonl) == len(progress_rows) == len(journal)
    for (tid, step, metrics), j, c in zip(journal, jsonl, progress_rows):
        metrics = json.loads(metrics)
        assert (j["trial_id"], j["step"]) == (tid, step) == (int(c["trial_id"]), int(c["step"]))
        assert j["score"] == metrics["score"] and float(c["score"]) == pytest.approx(metrics["score"])
    decisions = journal_rows(exp_dir, "SELECT trial_id, step, decision, info FROM decisions ORDER BY seq")
    djsonl = [json.loads(line) for line in (exp_dir / "decisions.jsonl").read_text().splitlines()]
    dcsv = read_csv(exp_dir / "decisions.csv")
    assert len(djsonl) == len(dcsv) == len(decisions)
    for (tid, step, decision, info), j, c in zip(decisions, djsonl, dcsv):
        reason = json.loads(info).get("reason", "")
        assert (j["trial_id"], j["step"], j["decision"], j.get("reason", "")) == (tid, step, decision, reason)
        assert (int(c["trial_id"]), int(c["step"]), c["decision"], c["reason"]) == (tid, step, decision, reason)
    final = dict(journal_rows(exp_dir, "SELECT id, status FROM trials"))
    ended = {int(r["trial_id"]): r["status"] for r in read_csv(exp_dir / "trials.csv")}
    assert ended == final
    events = [json.loads(line) for line in (exp_dir / "trials.jsonl").read_text().splitlines()]
    assert {e["trial_id"] for e in events if e["event"] == "error"} == {7}
    # Each result carries the params it was made with, also around a PBT exploit.
    ex = json.loads((exp_dir / "pbt_lineage.jsonl").read_text())
    for j, c in zip(jsonl, progress_rows):
        if j["trial_id"] == ex["trial_id"]:
            params = ex["old_params"] if j["step"] <= 3 else ex["new_params"]
            assert j["params"] == params and float(c["param:lr"]) == pytest.approx(params["lr"])


def test_csv_keeps_earlier_rows_when_resumed(tmp_path):
    cfg = simple_cfg(tmp_path, REPORTERS=["csv", "jsonl"])
    run_ask_tell(cfg)
    cfg["TUNE"]["NUM_TRIALS"] = 5
    exp = Experiment(cfg, resume=True)
    exp.start_experiment()
    while (trial := exp.ask()) is not None:
        # A new column appears after the resume: the file is rewritten with both.
        while exp.tell(trial, {"score": trial.params["x"], "extra": 1.0}) == Decision.CONTINUE:
            pass
    exp.finish()
    journal = journal_rows(tmp_path / "exp", "SELECT trial_id, step FROM results ORDER BY seq")
    rows = read_csv(tmp_path / "exp" / "progress.csv")
    assert [(int(r["trial_id"]), int(r["step"])) for r in rows] == journal and len(journal) == 10
    assert [r["extra"] for r in rows] == [""] * 6 + ["1.0"] * 4
    assert len((tmp_path / "exp" / "results.jsonl").read_text().splitlines()) == 10


# ---------------------------------------------------------------------- optional reporters


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_missing_optional_package_is_one_line_with_the_install_hint(tmp_path, monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    cfg = simple_cfg(tmp_path, REPORTERS=["jsonl", name])
    with pytest.raises(ConfigError) as info:
        Experiment(cfg, dry_run=True)
    message = str(info.value)
    assert "\n" not in message and "TUNE.REPORTERS" in message
    assert f"pip install 'reidplug[{name}]'" in message


# ---------------------------------------------------------------------- progress helper


def test_progress_plain_lines_and_quiet(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    stream = io.StringIO()
    with progress.bar("extracting features", total=4, stream=stream, every_s=0.0, unit="batch") as bar:
        for _ in range(4):
            bar.advance()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("extracting features: 1/4 batch (25%)") and "eta" in lines[0]
    assert lines[-1].startswith("extracting features: 4/4 batch in ")
    assert "\x1b" not in stream.getvalue()

    stream = io.StringIO()
    assert list(progress.track(range(3), "writing", stream=stream, every_s=3600.0)) == [0, 1, 2]
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[-1]]  # only the closing line
    assert stream.getvalue().startswith("writing: 3/3 it in ")

    stream = io.StringIO()
    with progress.stages(stream=stream, every_s=3600.0) as report:
        for i in range(1, 3):
            report("re-ranking: neighbours", i, 2)
        report("re-ranking: jaccard", 1, 1)
    assert [line.split(":")[0:2] for line in stream.getvalue().splitlines()] == [
        ["re-ranking", " neighbours"], ["re-ranking", " jaccard"]]

    progress.set_quiet(True)
    try:
        stream = io.StringIO()
        with progress.bar("silent", total=2, stream=stream, every_s=0.0) as bar:
            bar.advance(2)
        assert stream.getvalue() == "" and progress.mode(stream) == "quiet"
    finally:
        progress.set_quiet(False)


def test_progress_rich_on_a_terminal(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    assert progress.mode(stream) == "rich"
    with progress.bar("training", total=3, stream=stream) as bar:
        bar.advance(3)
    assert "training" in stream.getvalue() and "3/3" in stream.getvalue()
