"""The experiment journal: every event in SQLite, committed before the loop acts on it.

WAL mode with synchronous=NORMAL: a commit survives the process being killed at
any moment (SIGKILL, out of memory); only a power cut can lose the last commits.
Searcher and scheduler state are snapshots written in the same transaction as
the event that changed them, so a resumed experiment continues exactly where
the journal ends. They are stored as data (reidplug.core.state), never as code:
a journal received from someone else can be resumed without running anything
it holds. Effects outside the database that must not happen unless a
transaction commits (deleting a checkpoint) are queued with `after_commit`.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import struct
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from reidplug.core import faults
from reidplug.core import state as state_data
from reidplug.core.errors import UserError
from reidplug.core.trial import Trial, TrialStatus

# 2: component state stored as data (reidplug.core.state); 1 stored pickles.
SCHEMA_VERSION = 2
_SQLITE_MAGIC = b"SQLite format 3\x00"

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


class UnreadableJournal(UserError):
    """experiment.db is not an SQLite database, or a damaged one."""


def check_file(path: str | Path) -> None:
    """Refuse a file that cannot be a whole journal, reading only its header (nothing is written).

    A truncated database is shorter than the page count its header records.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            header = f.read(100)
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableJournal(f"{path}: cannot read the journal ({exc.strerror or exc})") from None
    if size == 0:
        return  # created by a run killed at once: it holds nothing yet
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise UnreadableJournal(f"{path}: not an experiment journal (not an SQLite database)")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = struct.unpack(">I", header[28:32])[0]
    valid_for, change_counter = header[92:96], header[24:28]
    if page_size < 512 or page_size & (page_size - 1) or size % page_size:
        raise UnreadableJournal(f"{path}: the journal is damaged (size {size} is not a whole number of pages)")
    if valid_for == change_counter and pages * page_size > size:
        raise UnreadableJournal(f"{path}: the journal is truncated ({size} of {pages * page_size} bytes)")


class Journal:
    """One experiment's SQLite journal."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._depth = 0
        self._after: list[Callable[[], None]] = []
        self._last_state: dict[str, bytes] = {}
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=10000")
            self.conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UnreadableJournal(f"{self.path}: not a readable experiment journal ({exc})") from None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error, AttributeError):
            self.conn.close()

    @contextlib.contextmanager
    def transaction(self, label: str | None = None) -> Iterator[Journal]:
        """Group writes into one commit; nested uses join the outer transaction.

        A labelled outermost transaction passes the fault points `commit:<label>` and
        `committed:<label>` (reidplug.core.faults), for the crash tests.
        """
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
            self._after.clear()
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        if label:
            faults.point(f"commit:{label}")
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self._after.clear()  # nothing committed: none of its effects may happen
            raise
        if label:
            faults.point(f"committed:{label}")
        self._run_after()

    def after_commit(self, effect: Callable[[], None]) -> None:
        """Run `effect` once the current transaction has committed (at once outside one); never on rollback."""
        if self._depth:
            self._after.append(effect)
        else:
            effect()

    def _run_after(self) -> None:
        while self._after:
            effects, self._after = self._after, []
            for effect in effects:
                effect()

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

    def checkpoints_newest_first(self, trial_id: int) -> list[tuple[int, str]]:
        """(step, path) of a trial's live checkpoints, the most recently recorded first."""
        rows = self.conn.execute(
            "SELECT step, path FROM checkpoints WHERE trial_id = ? AND status = 'live' ORDER BY rowid DESC", (trial_id,)
        )
        return list(rows)

    # -- component state
    def save_state(self, component: str, state: dict, allowed: Iterable[tuple[str, str]] = ()) -> None:
        """Store a state_dict as data; objects of other classes than `allowed` are refused."""
        blob = state_data.dumps(state, allowed)
        if self._last_state.get(component) == blob:
            return  # unchanged since the last write
        self.conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (component, blob))
        self._last_state[component] = blob

    def load_state(self, component: str, allowed: Iterable[tuple[str, str]] = ()) -> dict | None:
        """The stored state, built from data alone (a pickle of an older journal admits only `allowed`)."""
        row = self.conn.execute("SELECT blob FROM state WHERE component = ?", (component,)).fetchone()
        if not row:
            return None
        try:
            return state_data.loads(row[0], allowed)
        except state_data.StateError as exc:
            raise UnreadableJournal(f"{self.path}: the {component}'s state: {exc}") from None


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
