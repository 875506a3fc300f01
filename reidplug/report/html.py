"""The report as one self-contained HTML page: plots embedded as base64, the results table, the best config."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.text { text-align: left; white-space: normal; }
tr.best td { background: #e8f6e8; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.note { color: #777; font-style: italic; }
.scroll { max-height: 40em; overflow: auto; }
"""

HIDDEN_COLUMNS = ("timestamp",)  # in report.json; a wall-clock number says little in a table
TITLES = {
    "history": "Optimisation history",
    "parallel": "Parallel coordinates",
    "curves": "Learning curves",
    "pbt": "PBT schedule and lineage",
    "importance": "Parameter importance",
}


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def render(doc: dict, images: dict[str, Path], best_config_text: str | None) -> str:
    """The HTML page of a report document (see build.py for its keys)."""
    s = doc["summary"]
    esc = html.escape
    read_at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["read_at"]))
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(s['name'])}: reidplug report</title>", f"<style>{STYLE}</style></head><body>",
        f"<h1>Experiment {esc(s['name'])}</h1>",
        "<p>" + esc(
            f"{s['num_trials']} trials ({', '.join(f'{v} {k.lower()}' for k, v in sorted(s['status'].items()))}), "
            f"{s['num_results']} results; {s['state']}; searcher {s['searcher']}, scheduler {s['scheduler']}; "
            f"metric {s['metric']} ({s['mode']}). Read at {read_at} from {s['dir']}."
        ) + "</p>",
    ]
    if s["best_trial"] is not None:
        parts.append(f"<p><b>Best trial {s['best_trial']}</b>: {esc(s['metric'])} = {esc(_fmt(s['best_value']))}</p>")
    else:
        parts.append("<p class='note'>No trial has a result yet.</p>")

    for key, title in TITLES.items():
        parts.append(f"<h2 id='{key}'>{esc(title)}</h2>")
        path = images.get(key)
        if path is not None:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<img alt='{esc(title)}' src='data:image/png;base64,{data}'>")
        else:
            parts.append(f"<p class='note'>{esc(doc['notes'].get(key, 'nothing to show yet'))}</p>")
        if key == "importance" and doc["importance"].get("importance"):
            parts.append(f"<p class='note'>Method: {esc(doc['importance']['method'])}.</p>")

    parts.append("<h2 id='best'>Best configuration</h2>")
    if best_config_text:
        parts.append(f"<pre>{esc(best_config_text)}</pre>")
    elif s["best_params"] is not None:
        parts.append("<pre>" + esc("\n".join(f"{k}: {_fmt(v)}" for k, v in s["best_params"].items())) + "</pre>")
    else:
        parts.append("<p class='note'>none yet</p>")

    parts.append("<h2 id='results'>Results</h2>")
    rows = doc["table"]
    if rows:
        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns and c not in HIDDEN_COLUMNS]
        metric, sign = s["metric"], (-1 if s["mode"] == "max" else 1)
        rows = sorted(rows, key=lambda r: (r.get(metric) is None, sign * (r.get(metric) or 0.0), r["trial_id"]))
        parts.append("<div class='scroll'><table><thead><tr>")
        parts += [f"<th>{esc(c)}</th>" for c in columns]
        parts.append("</tr></thead><tbody>")
        for row in rows:
            cls = " class='best'" if row["trial_id"] == s["best_trial"] else ""
            cells = []
            for c in columns:
                v = row.get(c)
                text_cls = " class='text'" if isinstance(v, str) and c in ("error", "status") else ""
                cells.append(f"<td{text_cls}>{esc(_fmt(v))}</td>")
            parts.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table></div>")
    else:
        parts.append("<p class='note'>no trials yet</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
