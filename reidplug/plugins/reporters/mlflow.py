"""MLflow tracking: one run for the experiment, one nested run per trial.

The default store is a folder, `<experiment>/mlruns` (`mlflow ui --backend-store-uri
<experiment>/mlruns` shows it); TUNE.MLFLOW.TRACKING_URI names any other store
(`sqlite:///...`, `http://...`). Run ids are kept in `<experiment>/mlflow_runs.json`,
so that a resumed experiment goes on logging into the same runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from reidplug.core.hookspecs import hookimpl
from reidplug.core.reporter import Reporter
from reidplug.plugins.reporters.scalars import ParamTracker, numeric_params, require, scalar_metrics

STATE_FILE = "mlflow_runs.json"
# MLflow cuts tag values at 5000 characters and param values at 6000.
MAX_TAG = 5000
MAX_PARAM = 6000
METRICS_PER_BATCH = 1000


class MlflowReporter(Reporter):
    """Logs params, metrics by step and status of every trial as nested MLflow runs."""

    OPTIONS = {"TRACKING_URI": "", "EXPERIMENT_NAME": ""}

    def __init__(self, experiment, *, tracking_uri: str = "", experiment_name: str = ""):
        super().__init__(experiment)
        require("mlflow", "mlflow", "mlflow")
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.client = None
        self._tracking = ""
        self.parent_id: str | None = None
        self.run_ids: dict[int, str] = {}
        self._logged_params: set[int] = set()
        self._params: ParamTracker | None = None
        self._num_results = 0
        self._best: float | None = None

    # ------------------------------------------------------------------ setup

    def _uri(self, experiment) -> str:
        uri = self.tracking_uri or (experiment.dir / "mlruns").resolve().as_uri()
        if ":" not in uri and uri != "databricks":
            uri = Path(uri).resolve().as_uri()  # a plain folder
        if uri.startswith("file:"):
            # Recent MLflow keeps the folder store only for those who ask for it.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return uri

    @hookimpl
    def on_experiment_start(self, experiment):
        from mlflow.tracking import MlflowClient

        self.experiment = experiment
        self._params = ParamTracker(experiment)
        uri = self._tracking = self._uri(experiment)
        self.client = MlflowClient(tracking_uri=uri)
        name = self.experiment_name or experiment.name
        found = self.client.get_experiment_by_name(name)
        self.mlflow_experiment_id = found.experiment_id if found is not None else self.client.create_experiment(name)
        state = self._load_state(uri)
        if state:
            self.parent_id = state["parent"]
            self.run_ids = {int(k): v for k, v in state["trials"].items()}
            self._logged_params = set(self.run_ids)
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            tune = experiment.cfg.TUNE
            run = self.client.create_run(self.mlflow_experiment_id, run_name=experiment.name, tags={
                "reidplug.experiment_dir": str(experiment.dir), "reidplug.kind": "experiment"})
            self.parent_id = run.info.run_id
            params = {"metric": experiment.metric, "mode": experiment.mode, "searcher": tune.SEARCHER,
                      "scheduler": tune.SCHEDULER, "num_trials": tune.NUM_TRIALS, "max_steps": experiment.max_steps,
                      "trainable": experiment.trainable if isinstance(experiment.trainable, str) else "(object)"}
            params.update({f"space.{k}": json.dumps(v) for k, v in experiment.space.spec().items()})
            self._log_params(self.parent_id, params)
            self._save_state(uri)
        for trial in experiment.trials.values():
            self._note_best(trial.last_result)

    def _state_path(self) -> Path:
        return self.experiment.dir / STATE_FILE

    def _load_state(self, uri: str) -> dict | None:
        try:
            state = json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return None
        if state.get("tracking_uri") != uri or state.get("experiment_id") != self.mlflow_experiment_id:
            return None
        try:
            self.client.get_run(state["parent"])
        except Exception:  # the store was moved or cleaned: start new runs
            return None
        return state

    def _save_state(self, uri: str) -> None:
        path = self._state_path()
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"tracking_uri": uri, "experiment_id": self.mlflow_experiment_id,
                                   "parent": self.parent_id, "trials": self.run_ids}, indent=1))
        os.replace(tmp, path)

    # ------------------------------------------------------------------ logging

    def _log_params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), _text(v)[:MAX_PARAM]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def _log_metrics(self, run_id: str, values: dict, step: int, timestamp: float) -> None:
        from mlflow.entities import Metric

        ms = int(timestamp * 1000)
        items = [Metric(key, value, ms, int(step)) for key, value in values.items()]
        for i in range(0, len(items), METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[i:i + METRICS_PER_BATCH])

    def _run(self, trial) -> str:
        run_id = self.run_ids.get(trial.id)
        if run_id is None:
            run = self.client.create_run(self.mlflow_experiment_id, run_name=trial.name, tags={
                "mlflow.parentRunId": self.parent_id, "reidplug.trial_id": str(trial.id),
                "reidplug.kind": "trial"})
            run_id = self.run_ids[trial.id] = run.info.run_id
            self._save_state(self._tracking)
        return run_id

    def _note_best(self, result: dict | None) -> bool:
        value = (result or {}).get(self.experiment.metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            return False
        better = self._best is None or (value > self._best if self.experiment.mode == "max" else value < self._best)
        if better:
            self._best = float(value)
        return better

    @hookimpl
    def on_trial_start(self, trial):
        run_id = self._run(trial)
        if trial.id not in self._logged_params:
            self._log_params(run_id, self._params.first(trial))
            self._logged_params.add(trial.id)
        else:
            self.client.update_run(run_id, status="RUNNING")
        self._params.start(trial)
        self.client.set_tag(run_id, "reidplug.status", "RUNNING")

    @hookimpl
    def on_trial_result(self, trial, result):
        run_id = self._run(trial)
        step = int(result.get("step", trial.step))
        when = float(result.get("timestamp") or time.time())
        values = scalar_metrics(result)
        if self._params.varying(trial):
            # Params are write-once in MLflow: values that change over time (PBT) are metrics.
            in_force = self._params.in_force(trial)
            values.update({f"hparam/{k}": v for k, v in numeric_params(in_force).items()})
            self.client.set_tag(run_id, "reidplug.params", _text(in_force)[:MAX_TAG])
        self._log_metrics(run_id, values, step, when)
        self._num_results += 1
        self._note_best(result)
        if self._best is not None:
            # The experiment's run: the best value so far, one point per result.
            self._log_metrics(self.parent_id, {f"best_{self.experiment.metric}": self._best}, self._num_results, when)

    @hookimpl
    def on_trial_decision(self, trial, result, decision, info):
        value = getattr(decision, "value", str(decision))
        if value != "CONTINUE":
            run_id = self._run(trial)
            self.client.set_tag(run_id, "reidplug.decision", value)
            if info and info.get("reason"):
                self.client.set_tag(run_id, "reidplug.reason", str(info["reason"])[:MAX_TAG])
            if value == "PAUSE":
                self.client.set_tag(run_id, "reidplug.status", "PAUSED")

    @hookimpl
    def on_trial_complete(self, trial):
        run_id = self._run(trial)
        self.client.set_tag(run_id, "reidplug.status", "TERMINATED")
        self.client.set_terminated(run_id, status="FINISHED")

    @hookimpl
    def on_trial_error(self, trial, error):
        run_id = self._run(trial)
        self.client.set_tag(run_id, "reidplug.status", "ERROR")
        self.client.set_tag(run_id, "reidplug.error", str(error)[:MAX_TAG])
        self.client.set_terminated(run_id, status="FAILED")

    @hookimpl
    def on_experiment_end(self, experiment):
        if self.client is None:
            return
        summary = experiment.summary()
        if summary.get("best_trial") is not None:
            self.client.set_tag(self.parent_id, "reidplug.best_trial", str(summary["best_trial"]))
            self.client.set_tag(self.parent_id, "reidplug.best_params", _text(summary["best_params"])[:MAX_TAG])
        for trial in experiment.trials.values():
            if trial.status.value in ("RUNNING", "PENDING", "PAUSED") and trial.id in self.run_ids:
                self.client.set_terminated(self.run_ids[trial.id], status="KILLED")
        reason = summary.get("stopped_reason")
        self.client.set_terminated(self.parent_id, status="KILLED" if reason == "interrupted" else "FINISHED")


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


@hookimpl
def register_reporters(register):
    register("mlflow", MlflowReporter, description="MLflow runs: one per experiment, one nested run per trial")
