"""Files written from an experiment's state: results.csv, best_config.yaml, summary.json
and each trial's config.yaml."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from reidplug.core import checkpoints as ckpt
from reidplug.core.config import to_yaml, unstructure, with_params
from reidplug.core.outputs import atomic_write
from reidplug.core.trial import Trial


def write_all(exp) -> dict:
    """results.csv, best_config.yaml (when a trial has a result) and summary.json; returns the summary."""
    write_results_csv(exp)
    best = exp.best_trial()
    if best is not None:
        write_best_config(exp, best)
    data = summary(exp)
    atomic_write(exp.dir / "summary.json", json.dumps(data, indent=2, default=str) + "\n")
    return data


def write_trial_config(exp, trial: Trial) -> None:
    """The trial's config.yaml: the full config of a Re-ID trial, else its parameters."""
    params = to_yaml(exp.trial_config(trial)) if exp.is_reid else to_yaml(trial.params)
    atomic_write(exp.trial_dir(trial) / "config.yaml", params)


def append_line(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(line)


def write_best_config(exp, best: Trial) -> Path:
    """best_config.yaml: for Re-ID a config `reidplug train` runs as is; else the best parameters."""
    path = exp.dir / "best_config.yaml"
    if exp.is_reid:
        cfg = with_params(exp.cfg, best.params)
        data = unstructure(cfg)
        data["OUTPUT_DIR"] = str(exp.dir / "best")
        header = (
            f"# Best trial {best.id} of experiment {exp.name!r}: {exp.metric}={best.last_result[exp.metric]:.4f}\n"
            f"# Train it with: reidplug train {path}\n"
        )
        atomic_write(path, header + to_yaml(data))
    else:
        atomic_write(path, to_yaml({"trial": best.id, exp.metric: best.last_result[exp.metric], "params": best.params}))
    return path


def write_results_csv(exp) -> Path:
    path = exp.dir / "results.csv"
    rows = [trial_row(exp, t) for t in sorted(exp.trials.values(), key=lambda t: t.id)]
    columns: list[str] = ["trial_id", "status", "step", exp.metric, f"best_{exp.metric}"]
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())
    return path


def trial_row(exp, trial: Trial) -> dict:
    row: dict[str, Any] = {
        "trial_id": trial.id,
        "status": trial.status.value,
        "step": trial.step,
        exp.metric: trial.metric(exp.metric),
        f"best_{exp.metric}": trial.best(exp.metric, exp.mode),
    }
    for key, value in (trial.last_result or {}).items():
        if key not in row and isinstance(value, (int, float, str, bool)) and key not in ("trial_id",):
            row[key] = value
    for key, value in trial.params.items():
        row[f"param:{key}"] = value
    row["parent"] = trial.parent if trial.parent is not None else ""
    row["error"] = trial.error or ""
    return row


def summary(exp) -> dict:
    """Counts by status, the best trial, time used and disk used, as plain data."""
    best = exp.best_trial()
    counts: dict[str, int] = {}
    for t in exp.trials.values():
        counts[t.status.value] = counts.get(t.status.value, 0) + 1
    return {
        "name": exp.name,
        "dir": str(exp.dir),
        "metric": exp.metric,
        "mode": exp.mode,
        "num_trials": len(exp.trials),
        "status": counts,
        "best_trial": best.id if best else None,
        "best_result": best.last_result if best else None,
        "best_params": best.params if best else None,
        "time_used_s": round(exp.time_used(), 3),
        "disk_bytes": ckpt.disk_usage(exp.dir) if exp.dir.exists() else 0,
        "stopped_reason": exp._stopped_reason,
    }


