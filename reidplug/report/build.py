"""Build the report of an experiment folder: PNG plots, report.html and report.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reidplug.report import experiment_data, plots, series
from reidplug.report.importance import importance

PLOTS = ("history", "parallel", "curves", "pbt", "importance")


def collect(exp_dir: str | Path) -> dict:
    """The report's data: summary, the series behind every plot, the results table."""
    data = experiment_data.load(exp_dir)
    doc = {
        "summary": series.summary(data),
        "history": series.history(data),
        "parallel": series.parallel(data),
        "curves": series.curves(data),
        "pbt": series.pbt(data),
        "importance": importance(data),
        "table": series.table(data),
        "notes": {},
        "files": {},
    }
    return doc


def build_report(exp_dir: str | Path, out_dir: str | Path | None = None, *, plots_too: bool = True) -> dict:
    """Write the report of `exp_dir` into `out_dir` (default `<exp_dir>/report`); returns its data."""
    exp_dir = Path(exp_dir)
    out = Path(out_dir) if out_dir is not None else exp_dir / "report"
    doc = collect(exp_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, Path] = {}
    notes = doc["notes"]
    if plots_too:
        for name in PLOTS:
            path = getattr(plots, name)(doc[name], out / f"{name}.png")
            if path is None:
                notes[name] = _why_empty(name, doc)
                stale = out / f"{name}.png"
                if stale.exists():
                    stale.unlink()  # from an earlier report, when there was something to draw
            else:
                images[name] = path
                doc["files"][name] = path.name
    best_config = exp_dir / "best_config.yaml"
    best_text = best_config.read_text() if best_config.is_file() else None
    from reidplug.report.html import render

    _write(out / "report.html", render(doc, images, best_text))
    doc["files"]["html"] = "report.html"
    doc["files"]["json"] = "report.json"
    doc["out_dir"] = str(out)
    _write(out / "report.json", dumps(doc))
    return doc


def dumps(doc: dict) -> str:
    """Strict JSON (NaN as null)."""
    return json.dumps(experiment_data.jsonable(doc), indent=1, default=str, allow_nan=False) + "\n"


def _why_empty(name: str, doc: dict) -> str:
    if name == "pbt":
        return doc["pbt"]["note"]
    if name == "importance":
        return doc["importance"].get("note") or "no importance to show"
    return "no result yet"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
