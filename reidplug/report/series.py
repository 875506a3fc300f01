"""The data behind each plot of the report, computed from an experiment's journal."""

from __future__ import annotations

import json
import math
from typing import Any

from reidplug.report import names
from reidplug.report.experiment_data import ExperimentData

# The reasons the experiment itself gives when a trial has spent its budget.
STOP_REASONS_DONE = ("max_steps", "done")
OUTCOME_ORDER = ("completed", "stopped", "failed", "running", "paused", "pending")  # as the summary counts them


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def history(data: ExperimentData) -> dict:
    """Best so far against trial number (each trial's last result) and against time (every result)."""
    last = data.last_results()
    by_trial: dict[str, list] = {"trial_id": [], "value": [], "best": []}
    best = None
    for trial in data.trials:
        value = data.value(last.get(trial["id"]))
        if value is None:
            continue
        best = value if best is None or data.better(value, best) else best
        by_trial["trial_id"].append(trial["id"])
        by_trial["value"].append(value)
        by_trial["best"].append(best)
    by_time: dict[str, list] = {"time_s": [], "trial_id": [], "value": [], "best": []}
    best = None
    for r in data.results:
        value = data.value(r)
        if value is None:
            continue
        best = value if best is None or data.better(value, best) else best
        by_time["time_s"].append(round(r["time"] - data.created_at, 3))
        by_time["trial_id"].append(r["trial_id"])
        by_time["value"].append(value)
        by_time["best"].append(best)
    return {"metric": data.metric, "mode": data.mode, "by_trial": by_trial, "by_time": by_time}


def _axis(name: str, domain, values: list) -> dict:
    """How one parameter maps to [0, 1] on its axis, with tick labels in its own units."""
    if domain is None:
        # A parameter outside the space (added by a scheduler): scaled to the values seen.
        numeric = [v for v in values if _finite(v)]
        if numeric and len(numeric) == len(values):
            lo, hi = min(numeric), max(numeric)
            return {"name": name, "kind": "observed", "low": lo, "high": hi, "log": False,
                    "ticks": [[0.0, _label(lo)], [1.0, _label(hi)]] if hi > lo else [[0.5, _label(lo)]]}
        cats = sorted({json.dumps(v, default=str) for v in values})
        return {"name": name, "kind": "observed", "categories": [json.loads(c) for c in cats],
                "ticks": [[(i + 0.5) / len(cats), _label(json.loads(c))] for i, c in enumerate(cats)]}
    if domain.categorical:
        n = len(domain.values)
        return {"name": name, "kind": domain.kind, "categories": list(domain.values),
                "ticks": [[(i + 0.5) / n, _label(v)] for i, v in enumerate(domain.values)]}
    lo, hi = domain.low, domain.high
    if domain.integer:  # randint excludes `high`
        hi = hi - 1
        if hi - lo < 10:
            return {"name": name, "kind": domain.kind, "low": domain.low, "high": domain.high, "log": False,
                    "ticks": [[float(domain.to_unit(v)), str(v)] for v in range(lo, hi + 1)]}
    ticks = [[float(domain.to_unit(v)), _label(v)] for v in (lo, hi)]
    if getattr(domain, "log", False) and lo > 0:
        mid = math.sqrt(lo * hi)
        ticks.insert(1, [float(domain.to_unit(mid)), _label(mid)])
    elif not domain.integer:
        ticks.insert(1, [float(domain.to_unit((lo + hi) / 2)), _label((lo + hi) / 2)])
    return {"name": name, "kind": domain.kind, "low": domain.low, "high": domain.high,
            "log": bool(getattr(domain, "log", False)), "ticks": ticks}


def _to_unit(axis: dict, domain, value) -> float:
    if domain is not None:
        if domain.categorical:
            try:
                return float(domain.to_unit(value))
            except ValueError:
                return math.nan  # a value the space no longer holds
        if _finite(value):
            return float(domain.to_unit(value))
        return math.nan
    if "categories" in axis:
        cats = [json.dumps(c, default=str) for c in axis["categories"]]
        return (cats.index(json.dumps(value, default=str)) + 0.5) / len(cats)
    lo, hi = axis["low"], axis["high"]
    return 0.5 if hi == lo else (float(value) - lo) / (hi - lo)


def parallel(data: ExperimentData) -> dict:
    """Every trial with a result as a line across its parameters scaled to their domains."""
    space = data.space()
    domains = dict(space.domains) if space is not None else {}
    last = data.last_results()
    scored = [(t, data.value(last.get(t["id"]))) for t in data.trials]
    scored = [(t, v) for t, v in scored if v is not None]
    names = list(domains)
    for t, _ in scored:
        names += [k for k in t["params"] if k not in names]
    axes = [_axis(n, domains.get(n), [t["params"].get(n) for t, _ in scored if n in t["params"]]) for n in names]
    lines = []
    for t, value in scored:
        unit = [_to_unit(ax, domains.get(ax["name"]), t["params"].get(ax["name"])) if ax["name"] in t["params"]
                else math.nan for ax in axes]
        lines.append({"trial_id": t["id"], "unit": unit, "values": [t["params"].get(n) for n in names],
                      "metric": value})
    return {"metric": data.metric, "mode": data.mode, "axes": axes, "lines": lines}


def curves(data: ExperimentData) -> dict:
    """Each trial's metric by step, with the scheduler's pauses and stops and PBT's exploits marked."""
    by_trial: dict[int, dict] = {}
    ended = outcomes(data)
    for t in data.trials:
        by_trial[t["id"]] = {"trial_id": t["id"], "status": t["status"], "steps": [], "values": [],
                             "pauses": [], "stop": None, "error": None, "exploits": []}
    values_at: dict[tuple[int, int], float] = {}
    for r in data.results:
        entry = by_trial.get(r["trial_id"])
        value = data.value(r)
        if entry is None or value is None:
            continue
        entry["steps"].append(r["step"])
        entry["values"].append(value)
        values_at[(r["trial_id"], r["step"])] = value
    for d in data.decisions:
        entry = by_trial.get(d["trial_id"])
        if entry is None:
            continue
        value = values_at.get((d["trial_id"], d["step"]))
        if d["decision"] == "PAUSE":
            entry["pauses"].append([d["step"], value])
        elif d["decision"] == "STOP":
            reason = (d["info"] or {}).get("reason", "")
            entry["stop"] = {"step": d["step"], "value": value, "reason": reason,
                             "early": ended[d["trial_id"]]["kind"] == "stopped"}
    own: dict[int, list[dict]] = {}
    for r in data.results:
        if data.value(r) is not None:
            own.setdefault(r["trial_id"], []).append(r)
    for e in exploits(data):
        if e["trial_id"] in by_trial:
            # Marked at the trial's first result after the exploit: the first one made with the copy.
            mine = own.get(e["trial_id"], [])
            index = next((i for i, r in enumerate(mine) if r["time"] >= (e["time"] or 0.0)), None)
            first = mine[index] if index is not None else None
            donor = [r for r in own.get(e["donor"], []) if r["step"] == e["donor_step"]
                     and r["time"] <= (e["time"] or math.inf)]
            by_trial[e["trial_id"]]["exploits"].append({
                "donor": e["donor"], "donor_step": e["donor_step"],
                "donor_value": data.value(donor[-1]) if donor else None,
                "index": index, "step": first["step"] if first else None,
                "value": data.value(first) if first else None})
    for e in data.events:
        if e["kind"] in ("error", "rejected") and e["trial_id"] in by_trial:
            entry = by_trial[e["trial_id"]]
            entry["error"] = {"step": entry["steps"][-1] if entry["steps"] else 0,
                              "value": entry["values"][-1] if entry["values"] else None,
                              "message": e.get("message", "")}
    return {"metric": data.metric, "mode": data.mode, "trials": list(by_trial.values()),
            "step_epochs": data.step_epochs}


def outcomes(data: ExperimentData) -> dict[int, dict]:
    """How each trial ended or stands: kind (completed, stopped, failed, running, paused, pending),
    label (what the table shows) and reason (the scheduler's, or the error).

    A terminated trial completed when it reached the experiment's budget of steps or
    its trainable said it was done; any other end was the scheduler's early stop.
    """
    last = data.last_results()
    reasons: dict[int, str] = {}
    for d in data.decisions:
        if d["decision"] == "STOP":
            reasons[d["trial_id"]] = str((d["info"] or {}).get("reason", ""))
    who = names.scheduler((data.config.get("TUNE") or {}).get("SCHEDULER"))
    out = {}
    for t in data.trials:
        status, reason = t["status"], reasons.get(t["id"], "")
        if status == "TERMINATED":
            done = bool(((last.get(t["id"]) or {}).get("metrics") or {}).get("done"))
            if t["step"] >= data.max_steps or done or reason in STOP_REASONS_DONE:
                kind, label = "completed", "completed"
            else:
                kind, label = "stopped", f"stopped ({who})"
        elif status == "ERROR":
            kind, label, reason = "failed", "failed", t["error"] or ""
        else:
            kind = label = status.lower()
        out[t["id"]] = {"kind": kind, "label": label, "reason": reason}
    return out


def exploits(data: ExperimentData) -> list[dict]:
    """PBT's exploit steps, from the journal (or pbt_lineage.jsonl when the journal has none)."""
    found = [e for e in data.events if e["kind"] == "exploit"]
    if not found:
        path = data.dir / "pbt_lineage.jsonl"
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a crash
    keys = ("time", "trial_id", "step", "donor", "donor_step", "old_params", "new_params")
    return sorted(({k: e.get(k) for k in keys} for e in found), key=lambda e: e["time"] or 0.0)


def pbt(data: ExperimentData) -> dict:
    """The hyperparameter schedule of every trial (the params in force at each result) and the lineage."""
    found = exploits(data)
    if not found:
        return {"ran": False, "note": "no PBT exploit in this experiment: no schedule or lineage to show",
                "exploits": [], "schedule": {}, "lineage": []}
    per_trial: dict[int, list[dict]] = {}
    for e in found:
        per_trial.setdefault(e["trial_id"], []).append(e)
    current = {t["id"]: t["params"] for t in data.trials}
    initial = {tid: (per_trial[tid][0]["old_params"] if tid in per_trial else params)
               for tid, params in current.items()}
    names: list[str] = []
    for params in list(initial.values()) + [e["new_params"] for e in found]:
        names += [k for k in params if k not in names]
    # schedule[param][trial] = [[step, value, segment], ...]: the value in force at each result of the
    # trial; `segment` counts the exploits before the result (a new segment starts on a copied checkpoint).
    schedule: dict[str, dict[str, list]] = {n: {} for n in names}
    for r in data.results:
        tid = r["trial_id"]
        params, segment = initial.get(tid, {}), 0
        # The params in force at a result: those of the trial's last exploit before it.
        for e in per_trial.get(tid, []):
            if e["time"] is not None and e["time"] <= r["time"]:
                params, segment = e["new_params"], segment + 1
        for n in names:
            if n in params:
                schedule[n].setdefault(str(tid), []).append([r["step"], params[n], segment])
    space = data.space()
    log = {n: bool(space is not None and n in space.domains and getattr(space.domains[n], "log", False))
           for n in names}
    lineage = [{"trial_id": e["trial_id"], "step": e["step"], "donor": e["donor"], "donor_step": e["donor_step"]}
               for e in found]
    best = data.best_trial()
    return {"ran": True, "note": "", "exploits": found, "schedule": schedule, "log": log, "lineage": lineage,
            "best_ancestry": ancestry(found, best["id"]) if best else []}


def ancestry(found: list[dict], trial_id: int) -> list[dict]:
    """The chain of donors behind a trial: whose weights it carries, newest first."""
    chain, current, before = [], trial_id, math.inf
    for _ in range(len(found) + 1):
        mine = [e for e in found if e["trial_id"] == current and (e["time"] or 0.0) < before]
        if not mine:
            break
        e = mine[-1]
        chain.append({"trial_id": current, "step": e["step"], "donor": e["donor"], "donor_step": e["donor_step"]})
        current, before = e["donor"], e["time"] or 0.0
    return chain


def table(data: ExperimentData) -> list[dict]:
    """One row per trial, as in results.csv: the last result, the trial's best, params, parent, error."""
    last = data.last_results()
    ended = outcomes(data)
    rows = []
    for t in data.trials:
        r = last.get(t["id"])
        own = [data.value(x) for x in data.results_of(t["id"])]
        own = [v for v in own if v is not None]
        best = (max(own) if data.mode == "max" else min(own)) if own else None
        row: dict[str, Any] = {"trial_id": t["id"], "status": t["status"], "outcome": ended[t["id"]]["label"],
                               "step": t["step"], data.metric: data.value(r), f"best_{data.metric}": best}
        for key, value in ((r or {}).get("metrics") or {}).items():
            if key not in row and key != "trial_id" and isinstance(value, (int, float, str, bool)):
                row[key] = value
        for key, value in t["params"].items():
            row[f"param:{key}"] = value
        row["parent"] = t["parent"] if t["parent"] is not None else ""
        row["error"] = t["error"] or ""
        row["stop_reason"] = ended[t["id"]]["reason"] if ended[t["id"]]["kind"] == "stopped" else ""
        rows.append(row)
    return rows


def summary(data: ExperimentData) -> dict:
    counts: dict[str, int] = {}
    for t in data.trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    ended: dict[str, int] = {}
    for o in sorted(outcomes(data).values(), key=lambda o: OUTCOME_ORDER.index(o["kind"])
                    if o["kind"] in OUTCOME_ORDER else len(OUTCOME_ORDER)):
        ended[o["label"]] = ended.get(o["label"], 0) + 1
    best = data.best_trial()
    last = data.last_results()
    best_result = last.get(best["id"]) if best else None
    return {
        "name": data.name, "dir": str(data.dir), "metric": data.metric, "mode": data.mode,
        "state": "finished" if data.finished else ("running or interrupted" if data.trials else "starting"),
        "num_trials": len(data.trials), "num_results": len(data.results), "status": counts,
        "best_trial": best["id"] if best else None,
        "best_value": data.value(best_result) if best_result else None,
        "best_params": best["params"] if best else None,
        "best_result": best_result["metrics"] if best_result else None,
        "created_at": data.created_at, "read_at": data.read_at,
        "num_trials_planned": (data.config.get("TUNE") or {}).get("NUM_TRIALS"),
        "searcher": (data.config.get("TUNE") or {}).get("SEARCHER"),
        "scheduler": (data.config.get("TUNE") or {}).get("SCHEDULER"),
        "outcomes": ended, "max_steps": data.max_steps, "step_epochs": data.step_epochs,
        "metric_definition": metric_definition(data), "space": space_description(data),
    }


def metric_definition(data: ExperimentData) -> dict:
    """What TUNE.METRIC is: `formula` (exact for the Re-ID trainable's metrics) and `gloss`."""
    metric = data.metric
    if data.is_reid and metric in names.REID_METRICS:
        tests = (data.config.get("DATASETS") or {}).get("TESTS") or ["the test set"]
        where = f"from the trial's last evaluation on {tests[0]} (Market-1501 protocol)"
        if metric == "score":
            return {"formula": f"score = {names.REID_METRICS['score']}",
                    "gloss": "mAP is the mean average precision and Rank-1 the share of queries whose nearest "
                             f"gallery image shows the same person, both in %, {where}"}
        return {"formula": metric, "gloss": f"{names.REID_METRICS[metric]}, {where}"}
    return {"formula": metric, "gloss": "the value the trainable reports under this name (TUNE.METRIC)"}


def space_description(data: ExperimentData) -> list[dict]:
    """The searched parameters: full key, short name, domain in words."""
    spec = data.space_spec
    short = names.short_names(spec)
    out = []
    for key, domain in spec.items():
        out.append({"name": key, "short": short[key], "domain": _domain_words(domain)})
    return out


def _domain_words(spec) -> str:
    if not isinstance(spec, dict) or len(spec) != 1:
        return json.dumps(spec, default=str)
    (kind, args), = spec.items()
    args = list(args) if isinstance(args, (list, tuple)) else [args]
    if kind == "choice":
        return "one of " + ", ".join(_label(v) for v in args)
    if kind == "randint" and len(args) == 2:
        return f"an integer from {_label(args[0])} to {_label(args[1] - 1)}"
    words = {"uniform": "uniform", "loguniform": "log-uniform", "quniform": "uniform",
             "qloguniform": "log-uniform"}.get(kind, kind)
    text = f"{words} from {_label(args[0])} to {_label(args[1])}" if len(args) >= 2 else words
    if len(args) == 3:
        text += f" in steps of {_label(args[2])}"
    return text


def _label(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
