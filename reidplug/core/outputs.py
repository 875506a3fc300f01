"""Files derived from the journal: written after the commit they reflect, reconciled on resume.

A trial's `metrics.jsonl`, the experiment's `results.jsonl` and `pbt_lineage.jsonl`
each get a row per journaled result (or exploit). A process killed between a
commit and the line that reflects it leaves the line missing; a line written
before a commit that never happened would be a duplicate after the replay. On
resume, `reconcile` makes the rows it recognises exactly the journal's, in
order, and leaves every other line (a Re-ID trial's training rows) alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Hashable

METRICS = "metrics.jsonl"  # in each trial's folder
RESULTS = "results.jsonl"  # the jsonl reporter's rows, one per result
LINEAGE = "pbt_lineage.jsonl"


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text`; a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def row_line(row: dict) -> str:
    return json.dumps(row, default=str) + "\n"


def result_key(row: Any) -> Hashable | None:
    """(trial id, step, timestamp) of an experiment result row; None for any other row."""
    if not isinstance(row, dict) or "time_total_s" not in row:
        return None
    try:
        return (int(row["trial_id"]), int(row["step"]), float(row["timestamp"]))
    except (KeyError, TypeError, ValueError):
        return None


def lineage_key(row: Any) -> Hashable | None:
    if not isinstance(row, dict) or "donor" not in row:
        return None
    try:
        return (int(row["trial_id"]), float(row["time"]), int(row["step"]))
    except (KeyError, TypeError, ValueError):
        return None


def reconcile(path: Path, expected: list[tuple[Hashable, dict]], key: Callable[[Any], Hashable | None], *,
              create: bool = True) -> bool:
    """Make the rows of `path` that `key` recognises exactly `expected` (key, row), once each.

    Rows already there stay where they are; duplicates, rows the journal does not hold
    and a torn last line go; missing rows are appended in journal order. Returns whether
    the file was rewritten.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        if not create or not expected:
            return False
        text = ""
    except OSError:
        return False
    wanted = {k for k, _ in expected}
    seen: set = set()
    kept: list[str] = []
    changed = False
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with a newline
    if torn:
        changed = True
        try:
            json.loads(torn)
            lines.append(torn)  # whole, only its newline is missing
        except ValueError:
            pass
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            kept.append(line + "\n")  # not ours to judge
            continue
        k = key(row)
        if k is None:
            kept.append(line + "\n")
        elif k in wanted and k not in seen:
            seen.add(k)
            kept.append(line + "\n")
        else:
            changed = True
    missing = [row for k, row in expected if k not in seen]
    if missing:
        changed = True
        kept += [row_line(row) for row in missing]
    if changed:
        atomic_write(path, "".join(kept))
    return changed


def params_at(params: dict, exploits: list[dict], timestamp: float) -> dict:
    """The parameters a trial ran with when it reported at `timestamp`, from its exploit events.

    An exploit replaces the parameters after the result that triggered it, so the
    result ran with the `old_params` of the first exploit at or after it.
    """
    for event in exploits:
        if float(event.get("time", 0.0)) >= timestamp:
            return dict(event.get("old_params") or params)
    return dict(params)


def _step_key(row: Any) -> Hashable | None:
    """A result row of one trial's metrics.jsonl by (step, timestamp)."""
    key = result_key(row)
    return None if key is None else key[1:]


def reconcile_with_journal(journal, trials: dict, folder: Path, trial_dir: Callable[[Any], Path], *,
                           results_rows: bool) -> None:
    """Reconcile every trial's metrics.jsonl, results.jsonl (when it exists or `results_rows`) and
    pbt_lineage.jsonl with the journal's results and exploit events."""
    exploits: dict[int, list[dict]] = {}
    for event in journal.events("exploit"):
        exploits.setdefault(event["trial_id"], []).append(event)
    per_trial: dict[int, list] = {}
    everything = []
    for row in journal.results():
        key = result_key(row["metrics"])
        if key is not None:
            per_trial.setdefault(row["trial_id"], []).append((key[1:], row["metrics"]))
            everything.append((key, row))
    for trial in trials.values():
        if trial_dir(trial).is_dir():
            reconcile(trial_dir(trial) / METRICS, per_trial.get(trial.id, []), _step_key)
    results = folder / RESULTS
    if results_rows or results.exists():
        expected = []
        for key, row in everything:
            trial = trials.get(row["trial_id"])
            if trial is not None:
                params = params_at(trial.params, exploits.get(trial.id, []), key[2])
                expected.append((key, {"params": params, **row["metrics"]}))
        reconcile(results, expected, result_key)
    lineage = folder / LINEAGE
    if exploits or lineage.exists():
        entries = []
        for event in sorted((e for events in exploits.values() for e in events), key=lambda e: e["seq"]):
            data = {k: v for k, v in event.items() if k not in ("seq", "kind", "trial_id", "time")}
            entry = {"time": event.get("time"), "trial_id": event["trial_id"], **data}
            entries.append((lineage_key(entry), entry))
        reconcile(lineage, entries, lineage_key)
