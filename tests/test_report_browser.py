"""The report page as a reader sees it: rendered by headless Chromium at a 1280-pixel-wide window.

Needs a `chromium` (or `chromium-browser`) on PATH; `make browser` installs Debian's
package. Skipped without one, except under `make test` (REIDPLUG_TEST_ALL=1), where a
missing browser is an install bug.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reidplug.core.experiment import Experiment
from reidplug.core.trial import Decision
from reidplug.report.build import build_report

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1280, 900
KEY_COLUMNS = ["trial", "status", "score", "rank1", "mAP", "epoch", "steps",
               "BASE_LR", "IMS_PER_BATCH", "NUM_INSTANCE", "MARGIN"]

# Appended to a copy of the page: once everything is laid out, it writes what a reader would see
# (section order, where the table's columns lie, the status cells) into the DOM for --dump-dom.
MEASURE = """
<script>
window.addEventListener('load', function () {
  var box = function (el) { var b = el.getBoundingClientRect(); return {left: b.left, right: b.right, top: b.top}; };
  var scroller = document.querySelector('#results .scroll');
  var details = document.querySelector('#config details');
  var definition = document.getElementById('metric-definition');
  var out = {
    viewport: document.documentElement.clientWidth,
    page_width: document.documentElement.scrollWidth,
    sections: Array.from(document.querySelectorAll('body > section')).map(function (s) { return s.id; }),
    scroller: box(scroller),
    headers: Array.from(document.querySelectorAll('#results-table thead th')).map(function (th) {
      var b = box(th); b.text = th.innerText.trim(); return b; }),
    rows: Array.from(document.querySelectorAll('#results-table tbody tr')).map(function (tr) {
      return {trial: tr.dataset.trial, status: tr.querySelector('td.status').innerText.trim()}; }),
    definition: {text: definition.innerText, top: box(definition).top},
    table_top: box(document.getElementById('results-table')).top,
    details_open: details.open,
    config_shown: details.querySelector('pre').checkVisibility(),
    config_last: document.querySelector('body > section:last-of-type').contains(details),
    images: Array.from(document.images).map(function (im) {
      return {right: box(im).right, loaded: im.complete && im.naturalWidth > 0}; })
  };
  var pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "no chromium or chromium-browser on PATH (`make browser` installs it)"
    if os.environ.get("REIDPLUG_TEST_ALL"):
        pytest.fail(message)
    pytest.skip(message)


def _metrics(quality: float, step: int, max_steps: int) -> dict:
    rank1 = min(99.0, quality * (40 + 8 * step))
    mAP = rank1 * 0.7
    out = {"rank1": rank1, "rank5": min(100.0, rank1 + 10), "rank10": min(100.0, rank1 + 15), "mAP": mAP,
           "mINP": mAP / 3, "score": (mAP + rank1) / 2, "epoch": 2 * step, "loss": 5.0 / step,
           "lr": 3.5e-4 / step, "images_per_s": 350.0, "train_s": 1.2, "eval_s": 0.3}
    if step == max_steps:
        out["done"] = True  # as the Re-ID trainable says after its last epoch
    return out


def build_quickstart_like(root: Path) -> Path:
    """The quickstart's search (its space, ASHA, a Re-ID trainable's results) with made-up metrics:
    trials 1 and 4 complete, ASHA stops trial 2 at its first rung, trial 3 fails."""
    exp = Experiment(str(ROOT / "configs" / "quickstart.yml"),
                     [f"OUTPUT_DIR={root}", "TUNE.NUM_TRIALS=4", "TUNE.REPORTERS=[]"])
    quality = {1: 0.9, 2: 0.5, 4: 1.0}
    while (trial := exp.ask()) is not None:
        if trial.id == 3:
            exp.fail(trial, "RuntimeError: CUDA out of memory (made up for the test)")
            continue
        while exp.tell(trial, _metrics(quality[trial.id], trial.step + 1, exp.max_steps)) == Decision.CONTINUE:
            pass
    exp.finish()
    return root / "quickstart"


def render_in_chromium(browser: str, page: Path, tmp_path: Path) -> dict:
    probe = tmp_path / "probe.html"
    text = page.read_text()
    probe.write_text(text.replace("</body>", MEASURE + "</body>"))
    proc = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}",
         f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    start = proc.stdout.find("<pre id=\"measured\">")
    assert start >= 0, f"chromium did not run the page's script (rc {proc.returncode}): {proc.stderr[-2000:]}"
    body = proc.stdout[start + len("<pre id=\"measured\">"):]
    return json.loads(html.unescape(body[:body.index("</pre>")]))


@pytest.mark.slow  # draws the report's plots and starts a browser
def test_report_page_as_rendered_at_1280_pixels(tmp_path):
    browser = chromium()
    exp_dir = build_quickstart_like(tmp_path / "logs")
    build_report(exp_dir)
    seen = render_in_chromium(browser, exp_dir / "report" / "report.html", tmp_path)

    assert seen["viewport"] == WIDTH
    assert seen["page_width"] <= WIDTH, "the page itself scrolls sideways"
    # Summary, then the results, then the plots; the configuration last, folded.
    sections = seen["sections"]
    assert sections[:2] == ["summary", "results"] and sections[-1] == "config"
    assert set(sections[2:-1]) == {"curves", "history", "parallel", "importance", "pbt"}
    assert seen["config_last"] and not seen["details_open"] and not seen["config_shown"]

    # The key columns, in this order, all inside the window and the table's visible part.
    heads = [h["text"] for h in seen["headers"]]
    assert heads[:len(KEY_COLUMNS)] == KEY_COLUMNS
    visible_right = min(WIDTH, seen["scroller"]["right"])
    for h in seen["headers"][:len(KEY_COLUMNS)]:
        assert 0 <= h["left"] and h["right"] <= visible_right, h
    assert "last lr" in heads and "lr" not in heads and "SOLVER.BASE_LR" not in heads

    # score is defined before the first number that uses it.
    definition = seen["definition"]
    assert "score = (mAP + Rank-1) / 2" in definition["text"]
    assert definition["top"] < seen["table_top"]

    statuses = {int(r["trial"]): r["status"].splitlines() for r in seen["rows"]}
    assert statuses[1] == ["completed"] and statuses[4] == ["completed"] and statuses[3][0] == "failed"
    assert statuses[2][0] == "stopped (ASHA)" and "below the rung" in statuses[2][1]
    assert [int(r["trial"]) for r in seen["rows"]][:3] == [4, 1, 2]  # best first; the failed trial last

    pngs = list((exp_dir / "report").glob("*.png"))  # importance needs more trials than these
    assert len(seen["images"]) == len(pngs) == 3
    assert all(im["loaded"] and im["right"] <= WIDTH for im in seen["images"])
