"""The MLflow reporter: an experiment run with a nested run per trial, read back through MlflowClient."""

from __future__ import annotations

import json
import sqlite3

import pytest
from optional import need

need("mlflow")

from test_report import build_varied_experiment  # noqa: E402

from reidplug.core.experiment import Experiment  # noqa: E402
from reidplug.core.trial import Decision  # noqa: E402


def client_for(exp_dir):
    import os

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=(exp_dir / "mlruns").resolve().as_uri())


def runs_of(client, name="exp"):
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("reidplug.kind") == "experiment"]
    children = {int(r.data.tags["reidplug.trial_id"]): r for r in runs if r.data.tags.get("reidplug.kind") == "trial"}
    return parents, children


@pytest.mark.slow
def test_runs_params_metrics_and_status_match_the_journal(tmp_path):
    exp_dir = build_varied_experiment(tmp_path, reporters=("mlflow",))
    client = client_for(exp_dir)
    parents, children = runs_of(client)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["metric"] == "score"
    assert json.loads(parent.data.params["space.lr"]) == {"loguniform": [0.0001, 0.1]}

    conn = sqlite3.connect(f"file:{exp_dir / 'experiment.db'}?mode=ro", uri=True)
    trials = {tid: (json.loads(p), status) for tid, p, status in conn.execute("SELECT id, params, status FROM trials")}
    results = conn.execute("SELECT trial_id, step, metrics FROM results ORDER BY seq").fetchall()
    conn.close()
    lineage = json.loads((exp_dir / "pbt_lineage.jsonl").read_text())
    assert sorted(children) == sorted(trials)
    for tid, (params, status) in trials.items():
        run = children[tid]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"trial_{tid:04d}"
        started_with = lineage["old_params"] if tid == lineage["trial_id"] else params
        assert run.data.params == {k: str(v) for k, v in started_with.items()}
        assert run.info.status == ("FAILED" if status == "ERROR" else "FINISHED")
        mine = [(step, json.loads(m)) for t, step, m in results if t == tid]
        history = client.get_metric_history(run.info.run_id, "score")
        assert [(h.step, h.value) for h in history] == [(s, pytest.approx(m["score"])) for s, m in mine]
        assert [h.timestamp for h in history] == [int(m["timestamp"] * 1000) for _, m in mine]
    assert children[7].data.tags["reidplug.error"] == "CUDA out of memory (simulated)"
    assert children[3].data.tags["reidplug.reason"] == "below the median"
    # The exploited trial's params changed as it ran: logged as metrics from then on.
    lr = client.get_metric_history(children[lineage["trial_id"]].info.run_id, "hparam/lr")
    assert lr and all(h.step > lineage["donor_step"] for h in lr)
    assert lr[-1].value == pytest.approx(lineage["new_params"]["lr"])
    best = [h.value for h in client.get_metric_history(parent.info.run_id, "best_score")]
    assert best == sorted(best) and best[-1] == pytest.approx(max(json.loads(m)["score"] for _, _, m in results))
    assert parent.data.tags["reidplug.best_trial"] == str(json.loads((exp_dir / "summary.json").read_text())[
        "best_trial"])


@pytest.mark.slow
def test_a_resumed_experiment_logs_into_the_same_runs(tmp_path):
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {"NAME": "exp", "TRAINABLE": "noop", "NUM_TRIALS": 2, "MAX_STEPS": 2,
                                                 "REPORTERS": ["mlflow"], "SPACE": {"x": {"uniform": [0.0, 1.0]}}}}
    for num_trials, resume in ((2, False), (3, True)):
        cfg["TUNE"]["NUM_TRIALS"] = num_trials
        exp = Experiment(cfg, resume=resume)
        exp.start_experiment()
        while (trial := exp.ask()) is not None:
            while exp.tell(trial, {"score": trial.params["x"]}) == Decision.CONTINUE:
                pass
        exp.finish()
    parents, children = runs_of(client_for(tmp_path / "exp"))
    assert len(parents) == 1 and sorted(children) == [1, 2, 3]
    assert all(r.info.status == "FINISHED" for r in children.values())
