"""Resuming: the journal replayed into an Experiment, and what a killed process left behind removed.

Trials that were running when the process died restart from their last intact
checkpoint; files derived from the journal get exactly one row per journaled result.
"""

from __future__ import annotations

import contextlib
import sqlite3

from reidplug.core import checkpoints as ckpt
from reidplug.core import journal as journal_file
from reidplug.core import outputs, results
from reidplug.core.retention import temporary_files
from reidplug.core.trial import TrialStatus


def restore(exp) -> None:
    """Load trials, searcher and scheduler state from the journal; a damaged journal is one error."""
    try:
        replay(exp)
    except sqlite3.DatabaseError as exc:
        raise journal_file.UnreadableJournal(f"{exp.journal.path}: the journal is damaged ({exc})") from None


def replay(exp) -> None:
    exp.trials = exp.journal.load_trials()
    exp._best = False
    # Before anything is written: a state that does not load as data stops the resume here.
    for name, component in (("searcher", exp.searcher), ("scheduler", exp.scheduler)):
        state = exp.journal.load_state(name, exp._state_types[name])
        if state is not None:
            component.load_state_dict(state)
    # Paths in the journal are data from whoever wrote the folder: only those inside it are used.
    refused = []
    for tid, _, rel in exp.journal.checkpoints():
        if exp._retention.path(rel) is None:
            refused.append(rel)
        else:
            exp._retention.track(tid, rel)
    for trial in exp.trials.values():
        if trial.checkpoint and exp._retention.path(trial.checkpoint) is None:
            trial.checkpoint, trial.checkpoint_step = None, 0
        trial.restore_from = None  # recomputed below from the live checkpoints
    exp._next_id = max(exp.trials, default=0) + 1
    exp._time_used_before = float(exp.journal.get_meta("time_used_s", 0.0) or 0.0)
    with exp.journal.transaction("resume"):
        for rel in refused:
            exp.journal.set_checkpoint_status(rel, "refused")
            exp.journal.add_event("refused_path", path=rel, reason="outside the experiment folder")
        for trial in exp.trials.values():
            if trial.status in (TrialStatus.RUNNING, TrialStatus.PENDING):
                # It was running when the process died: continue from its last good checkpoint.
                exp._prepare_restart(trial, reason="resume")
            elif trial.status == TrialStatus.PAUSED:
                trial.restore_from = exp.good_checkpoint(trial)
        exp.journal.add_event("resume", restarted=[t.id for t in exp._restarts],
                               restored={t.id: t.checkpoint_step if t.restore_from else 0 for t in exp._restarts})
        for trial in exp._restarts:
            exp.journal.save_trial(trial)
    collect_leftovers(exp)
    reconcile_outputs(exp)


def collect_leftovers(exp) -> None:
    """Remove what a killed process left: unlisted checkpoint folders, staging folders, temporary files."""
    keep = set()
    for status in ("live", "corrupt"):
        for _, _, rel in exp.journal.checkpoints(status=status):
            path = exp._retention.path(rel)
            if path is not None:
                keep.add(path)
    names = [t.name for t in exp.trials.values()]
    for path in exp._retention.leftovers(names, keep):
        ckpt.remove(path)
    for folder in [exp.dir, *(exp.trial_dir(t) for t in exp.trials.values())]:
        for path in temporary_files(folder):
            with contextlib.suppress(OSError):
                path.unlink()


def reconcile_outputs(exp) -> None:
    """Give each file derived from the journal exactly one row per journaled result."""
    # results.jsonl belongs to the reporter that keeps those rows (jsonl: FILES holds "results").
    keeps_rows = any("results" in (getattr(r, "FILES", None) or ()) for r in exp.reporters)
    outputs.reconcile_with_journal(exp.journal, exp.trials, exp.dir, exp.trial_dir, results_rows=keeps_rows)
    for trial in exp.trials.values():
        if trial.parent is not None and exp.trial_dir(trial).is_dir():
            results.write_trial_config(exp, trial)  # the params of its last exploit


