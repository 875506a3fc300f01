"""The experiment journal: every event in SQLite, committed before the loop acts on it.

WAL mode with synchronous=NORMAL: a commit survives the process being killed at
any moment (SIGKILL, out of memory); only a power cut can lose the last commits.
Searcher and scheduler state are stored as pickled snapshots written in the
same transaction as the event that changed them, so a resumed experiment
continues exactly where the journal ends. Like a checkpoint, the journal is a
file this program wrote: treat experiment.db from elsewhere as untrusted code.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from reidplug.core.trial import Trial, TrialStatus

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY, params TEXT NOT NULL, status TEXT NOT NULL, step INTEGER NOT NULL,
    parent INTEGER, checkpoint TEXT, checkpoint_step INTEGER NOT NULL DEFAULT 0, restore_from TEXT,
    num_failures INTEGER NOT NULL DEFAULT 0, error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, trial_id INTEGER NOT NULL, step INTEGER NOT NULL,
    time REAL NOT NULL, metrics TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, trial_id INTEGER NOT NULL, step INTEGER NOT NULL,
    decision TEXT NOT NULL, info TEXT, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    trial_id INTEGER NOT NULL, step INTEGER NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL,
    time REAL NOT NULL, PRIMARY KEY (path));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, trial_id INTEGER, kind TEXT NOT NULL,
    data TEXT);
CREATE TABLE IF NOT EXISTS state (component TEXT PRIMARY KEY, blob BLOB NOT NULL);
"""


def _json(value: Any) -> str:
    return json.dumps(value, default=_jsonable, allow_nan=True, separators=(",", ":"))


def _jsonable(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


class Journal:
    """One experiment's SQLite journal."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.conn.executescript(_SCHEMA)
        self._depth = 0
        self._last_state: dict[str, bytes] = {}

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Journal]:
        """Group writes into one commit; nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self._last_state.clear()  # what was skipped as unchanged may be rolled back
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    # -- meta
    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _json(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- trials
    def save_trial(self, trial: Trial) -> None:
        now = time.time()
        self.conn.execute(
            "INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                trial.id, _json(trial.params), trial.status.value, trial.step, trial.parent, trial.checkpoint,
                trial.checkpoint_step, trial.restore_from, trial.num_failures, trial.error,
                trial.created_at or now, now,
            ),
        )

    def load_trials(self) -> dict[int, Trial]:
        trials: dict[int, Trial] = {}
        for row in self.conn.execute("SELECT * FROM trials ORDER BY id"):
            (tid, params, status, step, parent, ckpt, ckpt_step, restore, failures, error, created, _) = row
            trials[tid] = Trial(
                id=tid, params=json.loads(params), status=TrialStatus(status), step=step, parent=parent,
                checkpoint=ckpt, checkpoint_step=ckpt_step, restore_from=restore, num_failures=failures,
                error=error, created_at=created,
            )
        for tid, step, t, metrics in self.conn.execute("SELECT trial_id, step, time, metrics FROM results ORDER BY seq"):
            if tid in trials:
                result = json.loads(metrics)
                trials[tid].results.append(result)
        for trial in trials.values():
            trial.last_result = trial.results[-1] if trial.results else None
        return trials

    # -- results, decisions, events
    def add_result(self, trial_id: int, step: int, metrics: dict) -> None:
        self.conn.execute(
            "INSERT INTO results (trial_id, step, time, metrics) VALUES (?, ?, ?, ?)",
            (trial_id, step, time.time(), _json(metrics)),
        )

    def add_decision(self, trial_id: int, step: int, decision: str, info: dict | None = None) -> None:
        self.conn.execute(
            "INSERT INTO decisions (trial_id, step, decision, info, time) VALUES (?, ?, ?, ?, ?)",
            (trial_id, step, decision, _json(info or {}), time.time()),
        )

    def add_event(self, kind: str, trial_id: int | None = None, **data) -> None:
        self.conn.execute(
            "INSERT INTO events (time, trial_id, kind, data) VALUES (?, ?, ?, ?)",
            (time.time(), trial_id, kind, _json(data)),
        )

    def events(self, kind: str | None = None) -> list[dict]:
        query = "SELECT seq, time, trial_id, kind, data FROM events"
        rows = self.conn.execute(query + (" WHERE kind = ?" if kind else "") + " ORDER BY seq", (kind,) if kind else ())
        return [{"seq": s, "time": t, "trial_id": tid, "kind": k, **json.loads(d or "{}")} for s, t, tid, k, d in rows]

    def decisions(self) -> list[dict]:
        rows = self.conn.execute("SELECT seq, trial_id, step, decision, info, time FROM decisions ORDER BY seq")
        return [
            {"seq": s, "trial_id": tid, "step": st, "decision": d, "info": json.loads(i or "{}"), "time": t}
            for s, tid, st, d, i, t in rows
        ]

    def results(self) -> list[dict]:
        rows = self.conn.execute("SELECT trial_id, step, time, metrics FROM results ORDER BY seq")
        return [{"trial_id": tid, "step": st, "time": t, "metrics": json.loads(m)} for tid, st, t, m in rows]

    # -- checkpoints
    def add_checkpoint(self, trial_id: int, step: int, path: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, 'live', ?)", (trial_id, step, path, time.time())
        )

    def set_checkpoint_status(self, path: str, status: str) -> None:
        self.conn.execute("UPDATE checkpoints SET status = ? WHERE path = ?", (status, path))

    def checkpoints(self, trial_id: int | None = None, status: str | None = "live") -> list[tuple[int, int, str]]:
        query, args = "SELECT trial_id, step, path FROM checkpoints WHERE 1=1", []
        if trial_id is not None:
            query += " AND trial_id = ?"
            args.append(trial_id)
        if status is not None:
            query += " AND status = ?"
            args.append(status)
        return list(self.conn.execute(query + " ORDER BY trial_id, step", args))

    # -- component state
    def save_state(self, component: str, state: dict) -> None:
        blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        if self._last_state.get(component) == blob:
            return  # unchanged since the last write
        self.conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (component, blob))
        self._last_state[component] = blob

    def load_state(self, component: str) -> dict | None:
        row = self.conn.execute("SELECT blob FROM state WHERE component = ?", (component,)).fetchone()
        return pickle.loads(row[0]) if row else None


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
