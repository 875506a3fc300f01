"""The report as one self-contained HTML page: summary, results table, plots (embedded), the best config folded."""

from __future__ import annotations

import base64
import html
import json
import math
import time
from pathlib import Path

from reidplug.core.plural import plural
from reidplug.report import names

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em auto; max-width: 1200px;
       color: #222; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
p { margin: 0.45em 0; }
.lead { font-size: 1.05em; }
.definition { background: #f3f6fb; border-left: 3px solid #6b8fc9; padding: 0.35em 0.7em; }
.params { margin: 0.3em 0 0.3em 1.2em; padding: 0; font-size: 0.92em; }
.params code { font-size: 0.95em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; vertical-align: bottom; }
th.key { background: #e9eef6; }
td.text { text-align: left; white-space: normal; min-width: 16em; }
td.status, th[data-col='outcome'], th[data-col='error'] { text-align: left; }
td.status .why { color: #777; font-size: 0.85em; white-space: normal; }
tr.best td { background: #e8f6e8; font-weight: bold; }
.completed { color: #17602a; } .stopped { color: #8a5300; } .failed { color: #b3261e; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
details summary { cursor: pointer; font-weight: bold; }
.note { color: #666; font-size: 0.92em; }
.scroll { max-height: 40em; overflow: auto; }
"""

TITLES = {
    "curves": "Learning curves",
    "history": "Optimisation history",
    "parallel": "Parallel coordinates",
    "importance": "Parameter importance",
    "pbt": "PBT schedule and lineage",
}

# Columns of doc["table"] the page does not show as they are: the raw status and the stop reason make the
# `status` cell; a wall-clock timestamp and the trainable's done flag say little in a table (report.json
# has them).
HIDDEN = {"status", "error", "stop_reason", "timestamp", "done"}  # error: last, after every other column
HEADERS = {
    "images_per_s": ("images/s", "training images per second in the trial's last step"),
    "time_total_s": ("time (s)", "the trial's training time over all its steps"),
    "lr": ("last lr", "the learning rate at the trial's last iteration (SOLVER.BASE_LR is where the schedule "
                      "starts, before warmup and decay)"),
    "loss": ("loss", "the training loss at the trial's last iteration"),
    "train_s": ("train_s", "seconds the trial's last step spent training"),
    "eval_s": ("eval_s", "seconds the trial's last step spent evaluating"),
    "parent": ("parent", "the trial this one was copied from"),
}


def _number(value: float) -> str:
    """Few digits, as many as a reader compares: percentages to 0.01, small values to 3 significant digits."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _columns(doc: dict) -> list[dict]:
    """The table's columns, the key ones first: trial, status, the metric, Rank-1, mAP, epoch, steps, params."""
    s, rows = doc["summary"], doc["table"]
    metric = s["metric"]
    present = list(dict.fromkeys(k for row in rows for k in row))
    params = [k for k in present if k.startswith("param:")]
    short = names.short_names(k[len("param:"):] for k in params)
    searched = {p["name"] for p in s.get("space") or []}
    definition = s.get("metric_definition") or {}
    cols = [
        {"key": "trial_id", "head": "trial", "key_col": True},
        {"key": "outcome", "head": "status", "key_col": True,
         "title": "completed: ran its whole budget; stopped: ended early by the scheduler"},
        {"key": metric, "head": metric, "key_col": True,
         "title": " ".join(filter(None, [definition.get("formula"), "(the trial's last result)"]))},
    ]
    for key, head in (("rank1", "rank1"), ("mAP", "mAP")):
        if key in present and key != metric:
            cols.append({"key": key, "head": head, "key_col": True, "title": names.REID_METRICS[key]})
    if "epoch" in present:
        cols.append({"key": "epoch", "head": "epoch", "key_col": True, "title": "epochs trained"})
    cols.append({"key": "step", "head": "steps", "key_col": True,
                 "title": f"steps done of the budget of {s.get('max_steps')}"
                          + (f" (a step is {s['step_epochs']} epochs)" if s.get("step_epochs") else "")})
    for key in params:
        name = key[len("param:"):]
        cols.append({"key": key, "head": short[name], "key_col": True,
                     "title": name + ("" if name in searched else " (set by the scheduler)")})
    taken = {c["key"] for c in cols} | HIDDEN
    rest = [f"best_{metric}"] + [k for k in ("lr", "loss") if k in present]
    rest += [k for k in present if k not in rest and k not in taken and k != "parent"] + ["parent"]
    for key in rest:
        if key in taken or not any(row.get(key) not in (None, "") for row in rows):
            continue
        head, title = HEADERS.get(key, (key, ""))
        if key == f"best_{metric}":
            head, title = f"best {metric}", f"the trial's best {metric} over all its results"
        cols.append({"key": key, "head": head, "title": title})
    if any(row.get("error") for row in rows):  # long messages: the last column
        cols.append({"key": "error", "head": "error", "title": "why the trial failed"})
    return cols


def _cell(col: dict, row: dict, s: dict) -> str:
    esc = html.escape
    key = col["key"]
    if key == "outcome":
        kind = (row.get("outcome") or "").split(" ")[0]
        why = row.get("stop_reason") or row.get("error") or ""
        if len(why) > 48:  # an error message: its start here, all of it in the last column
            why = why[:47].rstrip() + "…"
        why = f"<br><span class='why'>{esc(why)}</span>" if why else ""
        return f"<td class='status {esc(kind)}'>{esc(row.get('outcome') or row.get('status') or '')}{why}</td>"
    if key == "step":
        return f"<td>{esc(str(row.get('step')))} / {esc(str(s.get('max_steps')))}</td>"
    value = row.get(key)
    if key == "lr" and isinstance(value, float):  # one notation down the column: the values span decades
        return f"<td title='{esc(repr(value))}'>{value:.2e}</td>"
    if key == "error":
        return f"<td class='text'>{esc(value or '')}</td>"
    exact = f" title='{esc(repr(value))}'" if isinstance(value, float) else ""
    text = " class='text'" if isinstance(value, str) and len(value) > 20 else ""
    return f"<td{text}{exact}>{esc(_fmt(value))}</td>"


def _table(doc: dict) -> list[str]:
    s, rows = doc["summary"], doc["table"]
    if not rows:
        return ["<p class='note'>no trials yet</p>"]
    esc = html.escape
    metric, sign = s["metric"], (-1 if s["mode"] == "max" else 1)
    rows = sorted(rows, key=lambda r: (r.get(metric) is None, sign * (r.get(metric) or 0.0), r["trial_id"]))
    cols = _columns(doc)
    out = ["<div class='scroll'><table id='results-table'><thead><tr>"]
    for c in cols:
        cls = " class='key'" if c.get("key_col") else ""
        title = f" title='{esc(c['title'])}'" if c.get("title") else ""
        out.append(f"<th{cls}{title} data-col='{esc(c['key'])}'>{esc(c['head'])}</th>")
    out.append("</tr></thead><tbody>")
    for row in rows:
        cls = " class='best'" if row["trial_id"] == s["best_trial"] else ""
        out.append(f"<tr{cls} data-trial='{row['trial_id']}'>" + "".join(_cell(c, row, s) for c in cols) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _summary(doc: dict) -> list[str]:
    s = doc["summary"]
    esc = html.escape
    read_at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["read_at"]))
    counts = s.get("outcomes") or {k.lower(): v for k, v in s["status"].items()}
    planned = s.get("num_trials_planned")
    budget = f"{s['max_steps']} step{'s' if s['max_steps'] != 1 else ''}"
    if s.get("step_epochs"):
        budget += f" of {s['step_epochs']} epoch{'s' if s['step_epochs'] != 1 else ''}"
    out = ["<section id='summary'>", "<p class='lead'>" + esc(
        f"{s['num_trials']} trial{'s' if s['num_trials'] != 1 else ''}"
        + (f" of {planned} planned" if planned and planned != s["num_trials"] else "")
        + (": " + ", ".join(f"{v} {k}" for k, v in counts.items()) if counts else "")
        + f". Searcher {s['searcher']}, scheduler {names.scheduler(s['scheduler'])}; {s['state']}. "
        f"A trial's whole budget: {budget}.") + "</p>"]
    definition = s.get("metric_definition") or {"formula": s["metric"], "gloss": ""}
    best_word = "highest" if s["mode"] == "max" else "lowest"
    out.append(f"<p class='definition' id='metric-definition'>Trials are ranked by their last "
               f"<b>{esc(definition['formula'])}</b>, {best_word} first"
               + (f": {esc(definition['gloss'])}." if definition.get("gloss") else ".") + "</p>")
    if s["best_trial"] is not None:
        result = s.get("best_result") or {}
        extra = [f"{k} {_fmt(result[k])}" for k in ("rank1", "mAP") if k in result and k != s["metric"]]
        row = next((r for r in doc["table"] if r["trial_id"] == s["best_trial"]), {})
        short = names.short_names(s["best_params"] or {})
        params = ", ".join(f"{short[k]} = {_fmt(v)}" for k, v in (s["best_params"] or {}).items())
        out.append(f"<p><b>Best trial {s['best_trial']}</b>: {esc(s['metric'])} {esc(_fmt(s['best_value']))}"
                   + (f" ({esc(', '.join(extra))})" if extra else "")
                   + (f", {esc(row['outcome'])} at step {row['step']}" if row.get("outcome") else "")
                   + (f"; {esc(params)}" if params else "") + ".</p>")
    else:
        out.append("<p class='note'>No trial has a result yet.</p>")
    space = s.get("space") or []
    if space:
        out.append("<p>Searched parameters (the table's and plots' short names):</p><ul class='params'>")
        for p in space:
            full = f" = <code>{esc(p['name'])}</code>" if p["short"] != p["name"] else ""
            out.append(f"<li><b>{esc(p['short'])}</b>{full}, {esc(p['domain'])}</li>")
        out.append("</ul>")
    out.append(f"<p class='note'>{plural(s['num_results'], 'result')}, read at {read_at} from {esc(s['dir'])}; "
               f"<code>reidplug report {esc(s['dir'])}</code> redraws this page.</p>")
    out.append("</section>")
    return out


def render(doc: dict, images: dict[str, Path], best_config_text: str | None) -> str:
    """The HTML page of a report document (see build.py for its keys)."""
    s = doc["summary"]
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{esc(s['name'])}: reidplug report</title>", f"<style>{STYLE}</style></head><body>",
        f"<h1>Experiment {esc(s['name'])}</h1>",
    ]
    parts += _summary(doc)
    parts.append("<section id='results'><h2>Results</h2>")
    parts.append(f"<p class='note'>One row per trial, best first (hover a column's name for what it holds). "
                 f"<span class='completed'>completed</span>: ran its whole budget; "
                 f"<span class='stopped'>stopped</span>: ended early by the scheduler, for the reason under it; "
                 f"<span class='failed'>failed</span>: an error, in full in the last column.</p>")
    parts += _table(doc)
    parts.append("</section>")

    for key, title in TITLES.items():
        parts.append(f"<section id='{key}'><h2>{esc(title)}</h2>")
        path = images.get(key)
        if path is not None:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<img alt='{esc(title)}' src='data:image/png;base64,{data}'>")
        else:
            parts.append(f"<p class='note'>{esc(doc['notes'].get(key, 'nothing to show yet'))}</p>")
        if key == "importance" and doc["importance"].get("importance"):
            parts.append(f"<p class='note'>Method: {esc(doc['importance']['method'])}.</p>")
        parts.append("</section>")

    parts.append("<section id='config'><h2>Configuration</h2>")
    if best_config_text:
        parts.append(f"<details><summary>The full config of best trial {s['best_trial']}, as "
                     "<code>reidplug train</code> takes it</summary>")
        parts.append(f"<pre>{esc(best_config_text)}</pre></details>")
    elif s["best_params"] is not None:
        parts.append(f"<details><summary>The params of best trial {s['best_trial']}</summary>")
        parts.append("<pre>" + esc("\n".join(f"{k}: {v}" for k, v in s["best_params"].items()))
                     + "</pre></details>")
    else:
        parts.append("<p class='note'>none yet</p>")
    parts.append("</section></body></html>")
    return "\n".join(parts)
