"""JSONL and CSV rows per result, per trial and per decision."""

from __future__ import annotations

import csv
import json
import os
import time

from reidplug.core.hookspecs import hookimpl
from reidplug.core.reporter import Reporter


class _RowFiles(Reporter):
    """What the jsonl and csv reporters share: files kept across a resume, params as launched."""

    def __init__(self, experiment):
        super().__init__(experiment)
        self._keep = True
        self._launched: dict[int, dict] = {}

    @hookimpl
    def on_experiment_start(self, experiment):
        self.experiment = experiment
        # A resumed experiment appends to the rows of its earlier runs; a new one starts its files afresh.
        self._keep = bool(experiment.trials)


class JsonlReporter(_RowFiles):
    """Writes results.jsonl, trials.jsonl and decisions.jsonl in the experiment folder."""

    FILES = ("results", "trials", "decisions")

    def __init__(self, experiment):
        super().__init__(experiment)
        self._files = {}

    def _write(self, name: str, row: dict) -> None:
        f = self._files.get(name)
        if f is None:
            mode = "a" if self._keep else "w"
            f = self._files[name] = open(self.experiment.dir / f"{name}.jsonl", mode, buffering=1)
        f.write(json.dumps(row, default=str) + "\n")

    @hookimpl
    def on_trial_result(self, trial, result):
        self._write("results", {"params": self._launched.get(trial.id, trial.params), **result})

    @hookimpl
    def on_trial_start(self, trial):
        # A result is made with the params of its launch; PBT may change them in the decision on it.
        self._launched[trial.id] = dict(trial.params)
        self._write("trials", _trial_row(trial, "start"))

    @hookimpl
    def on_trial_complete(self, trial):
        self._write("trials", _trial_row(trial, "complete"))

    @hookimpl
    def on_trial_error(self, trial, error):
        self._write("trials", {**_trial_row(trial, "error"), "error": error})

    @hookimpl
    def on_trial_decision(self, trial, result, decision, info):
        self._write("decisions", {
            "time": round(time.time(), 3), "trial_id": trial.id, "step": _decision_step(trial, result),
            "decision": getattr(decision, "value", str(decision)), **(info or {}),
        })

    @hookimpl
    def on_experiment_end(self, experiment):
        for f in self._files.values():
            f.close()
        self._files.clear()


class CsvReporter(_RowFiles):
    """Writes progress.csv (one row per result), trials.csv and decisions.csv."""

    def __init__(self, experiment):
        super().__init__(experiment)
        self._writers: dict[str, tuple] = {}

    def _write(self, name: str, row: dict) -> None:
        entry = self._writers.get(name)
        if entry is None or not entry[2].issuperset(row):
            # A new column (or the file of an earlier run): rewrite the file with the union of columns.
            path = self.experiment.dir / f"{name}.csv"
            keep = entry is not None or self._keep
            old_rows = _read_rows(path) if keep else []
            columns = list(entry[1].fieldnames) if entry else (_read_header(path) if keep else [])
            columns += [k for k in row if k not in columns]
            if entry:
                entry[0].close()
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(old_rows)
            os.replace(tmp, path)
            f = open(path, "a", newline="", buffering=1)
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            entry = self._writers[name] = (f, writer, set(columns))  # the set: a fast check for new columns
        entry[1].writerow(row)

    @hookimpl
    def on_trial_start(self, trial):
        # A result is made with the params of its launch; PBT may change them in the decision on it.
        self._launched[trial.id] = dict(trial.params)

    @hookimpl
    def on_trial_result(self, trial, result):
        flat = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))}
        params = self._launched.get(trial.id, trial.params)
        self._write("progress", {**flat, **{f"param:{k}": v for k, v in params.items()}})

    @hookimpl
    def on_trial_complete(self, trial):
        self._write("trials", self.experiment.trial_row(trial))

    @hookimpl
    def on_trial_error(self, trial, error):
        self._write("trials", self.experiment.trial_row(trial))

    @hookimpl
    def on_trial_decision(self, trial, result, decision, info):
        self._write("decisions", {
            "time": round(time.time(), 3), "trial_id": trial.id, "step": _decision_step(trial, result),
            "decision": getattr(decision, "value", str(decision)), "reason": (info or {}).get("reason", ""),
        })

    @hookimpl
    def on_experiment_end(self, experiment):
        for f, *_ in self._writers.values():
            f.close()
        self._writers.clear()


def _decision_step(trial, result) -> int:
    # The step the decision was made at, as journaled: a PBT exploit inside the decision may
    # already have moved the trial to its donor's step.
    return (result or {}).get("step", trial.step)


def _trial_row(trial, event: str) -> dict:
    return {
        "time": round(time.time(), 3), "event": event, "trial_id": trial.id, "status": trial.status.value,
        "step": trial.step, "params": trial.params, "parent": trial.parent,
    }


def _read_header(path) -> list[str]:
    try:
        with open(path, newline="") as f:
            return next(csv.reader(f), [])
    except FileNotFoundError:
        return []


def _read_rows(path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


@hookimpl
def register_reporters(register):
    register("jsonl", JsonlReporter, description="results/trials/decisions .jsonl files")
    register("csv", CsvReporter, description="progress/trials/decisions .csv files")
