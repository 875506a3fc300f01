"""An experiment's journal read read-only: safe while the experiment runs, no lock taken."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reidplug.core.errors import UserError


@dataclass
class ExperimentData:
    """A consistent snapshot of one experiment's journal."""

    dir: Path
    name: str
    config: dict
    metric: str
    mode: str
    created_at: float
    trials: list[dict] = field(default_factory=list)  # by id
    results: list[dict] = field(default_factory=list)  # in the order they were journaled
    decisions: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    read_at: float = 0.0

    @property
    def space_spec(self) -> dict:
        return dict((self.config.get("TUNE") or {}).get("SPACE") or {})

    def space(self):
        """The search space (domains by parameter name), or None when the spec cannot be parsed."""
        from reidplug.core.errors import ConfigError
        from reidplug.core.space import SearchSpace

        try:
            return SearchSpace.parse(self.space_spec, schema=False)
        except ConfigError:
            return None

    @property
    def is_reid(self) -> bool:
        return (self.config.get("TUNE") or {}).get("TRAINABLE", "reid") == "reid"

    @property
    def step_epochs(self) -> int | None:
        """Epochs in one step of a Re-ID trial; None for other trainables."""
        return int((self.config.get("TUNE") or {}).get("STEP_EPOCHS") or 1) if self.is_reid else None

    @property
    def max_steps(self) -> int:
        """A trial's whole budget in steps, worked out as the experiment does."""
        tune = self.config.get("TUNE") or {}
        if tune.get("MAX_STEPS"):
            return int(tune["MAX_STEPS"])
        if self.is_reid:
            return math.ceil(int((self.config.get("SOLVER") or {}).get("MAX_EPOCH") or 1) / self.step_epochs)
        return 1

    @property
    def finished(self) -> bool:
        """True when the last run of the experiment ended (its `end` event is the last start/end event)."""
        for event in reversed(self.events):
            if event["kind"] == "end":
                return True
            if event["kind"] == "resume":
                return False
        return False

    def results_of(self, trial_id: int) -> list[dict]:
        return [r for r in self.results if r["trial_id"] == trial_id]

    def last_results(self) -> dict[int, dict]:
        """Each trial's last result (what the experiment ranks trials by)."""
        out: dict[int, dict] = {}
        for r in self.results:
            out[r["trial_id"]] = r
        return out

    def value(self, result: dict | None) -> float | None:
        """The metric of a result when it is a finite number."""
        if not result:
            return None
        v = result["metrics"].get(self.metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
        return None

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def best_trial(self) -> dict | None:
        """The trial with the best last result; ties go to the older trial, as in the experiment."""
        last = self.last_results()
        best, best_value = None, None
        for trial in self.trials:
            value = self.value(last.get(trial["id"]))
            if value is not None and (best_value is None or self.better(value, best_value)):
                best, best_value = trial, value
        return best


def load(exp_dir: str | Path) -> ExperimentData:
    """Read `<exp_dir>/experiment.db` without writing to it or taking the experiment's lock."""
    exp_dir = Path(exp_dir)
    db = exp_dir / "experiment.db"
    if not db.is_file():
        raise UserError(f"{exp_dir}: not an experiment folder (no experiment.db)")
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        raise UserError(f"{db}: cannot be opened: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        # One read transaction: every table from the same moment, while the experiment goes on writing.
        conn.execute("BEGIN")
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        trials = [
            {"id": tid, "params": json.loads(params), "status": status, "step": step, "parent": parent,
             "num_failures": failures, "error": error, "created_at": created, "updated_at": updated}
            for tid, params, status, step, parent, failures, error, created, updated in conn.execute(
                "SELECT id, params, status, step, parent, num_failures, error, created_at, updated_at "
                "FROM trials ORDER BY id")
        ]
        results = [
            {"seq": seq, "trial_id": tid, "step": step, "time": t, "metrics": json.loads(m)}
            for seq, tid, step, t, m in conn.execute(
                "SELECT seq, trial_id, step, time, metrics FROM results ORDER BY seq")
        ]
        decisions = [
            {"seq": seq, "trial_id": tid, "step": step, "decision": d, "info": json.loads(i or "{}"), "time": t}
            for seq, tid, step, d, i, t in conn.execute(
                "SELECT seq, trial_id, step, decision, info, time FROM decisions ORDER BY seq")
        ]
        events = [
            {**json.loads(data or "{}"), "seq": seq, "time": t, "trial_id": tid, "kind": kind}
            for seq, t, tid, kind, data in conn.execute(
                "SELECT seq, time, trial_id, kind, data FROM events ORDER BY seq")
        ]
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{db}: cannot be read: {exc}") from None
    finally:
        conn.close()
    config = meta.get("config") or {}
    if not isinstance(config, dict) or "TUNE" not in config:
        raise UserError(f"{db}: the experiment has not recorded its config yet")
    tune = config["TUNE"]
    created = meta.get("created_at") or (min((t["created_at"] for t in trials), default=time.time()))
    return ExperimentData(
        dir=exp_dir, name=str(meta.get("name") or tune.get("NAME") or exp_dir.name), config=config,
        metric=tune.get("METRIC", "score"), mode=tune.get("MODE", "max"), created_at=float(created),
        trials=trials, results=results, decisions=decisions, events=events, meta=meta, read_at=time.time(),
    )


def jsonable(value: Any) -> Any:
    """NaN and infinities as null, so that the JSON is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
