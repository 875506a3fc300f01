"""JSONL and CSV rows per result, per trial and per decision."""

from __future__ import annotations

import csv
import json
import time

from reidplug.core.hookspecs import hookimpl
from reidplug.core.reporter import Reporter


class JsonlReporter(Reporter):
    """Writes results.jsonl, trials.jsonl and decisions.jsonl in the experiment folder."""

    FILES = ("results", "trials", "decisions")

    def __init__(self, experiment):
        super().__init__(experiment)
        self._files = {}

    def _write(self, name: str, row: dict) -> None:
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = open(self.experiment.dir / f"{name}.jsonl", "a", buffering=1)
        f.write(json.dumps(row, default=str) + "\n")

    @hookimpl
    def on_trial_result(self, trial, result):
        self._write("results", {"params": trial.params, **result})

    @hookimpl
    def on_trial_start(self, trial):
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
            "time": round(time.time(), 3), "trial_id": trial.id, "step": trial.step,
            "decision": getattr(decision, "value", str(decision)), **(info or {}),
        })

    @hookimpl
    def on_experiment_end(self, experiment):
        for f in self._files.values():
            f.close()
        self._files.clear()


class CsvReporter(Reporter):
    """Writes progress.csv (one row per result), trials.csv and decisions.csv."""

    def __init__(self, experiment):
        super().__init__(experiment)
        self._writers: dict[str, tuple] = {}

    def _write(self, name: str, row: dict) -> None:
        entry = self._writers.get(name)
        path = self.experiment.dir / f"{name}.csv"
        if entry is None or any(k not in entry[2] for k in row):
            # A new column: rewrite the header by reopening with the union of columns.
            columns = list(entry[2]) if entry else []
            columns += [k for k in row if k not in columns]
            old_rows = _read_rows(path) if entry else []
            if entry:
                entry[0].close()
            f = open(path, "w", newline="", buffering=1)
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(old_rows)
            entry = self._writers[name] = (f, writer, columns)
        entry[1].writerow(row)
        entry[0].flush()

    @hookimpl
    def on_trial_result(self, trial, result):
        flat = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))}
        self._write("progress", {**flat, **{f"param:{k}": v for k, v in trial.params.items()}})

    @hookimpl
    def on_trial_complete(self, trial):
        self._write("trials", self.experiment.trial_row(trial))

    @hookimpl
    def on_trial_error(self, trial, error):
        self._write("trials", self.experiment.trial_row(trial))

    @hookimpl
    def on_trial_decision(self, trial, result, decision, info):
        self._write("decisions", {
            "time": round(time.time(), 3), "trial_id": trial.id, "step": trial.step,
            "decision": getattr(decision, "value", str(decision)), "reason": (info or {}).get("reason", ""),
        })

    @hookimpl
    def on_experiment_end(self, experiment):
        for f, _, _ in self._writers.values():
            f.close()
        self._writers.clear()


def _trial_row(trial, event: str) -> dict:
    return {
        "time": round(time.time(), 3), "event": event, "trial_id": trial.id, "status": trial.status.value,
        "step": trial.step, "params": trial.params, "parent": trial.parent,
    }


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
