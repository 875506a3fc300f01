"""`reidplug report`: the data behind each plot equals the journal; HTML, JSON; a running experiment; Re-ID visuals."""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reidplug.core import checkpoints as ckpt
from reidplug.core.errors import UserError
from reidplug.core.experiment import Experiment
from reidplug.core.hookspecs import hookimpl
from reidplug.core.manager import plugin_manager
from reidplug.core.scheduler import Scheduler
from reidplug.core.trial import Decision
from reidplug.plugins.report_command import report as report_command
from reidplug.report.build import build_report

TESTS = Path(__file__).parent
SPACE = {"lr": {"loguniform": [1e-4, 1e-1]}, "opt": {"choice": ["sgd", "adam", "adamw"]},
         "wd": {"uniform": [0.0, 0.1]}, "depth": {"randint": [1, 5]}}


class Scripted(Scheduler):
    """Pauses each trial once at step 2, stops trial 3 early, and makes trial 5 exploit the best (as PBT does)."""

    def setup(self, experiment):
        super().setup(experiment)
        self.queue, self.paused_once, self.exploited = [], set(), False

    def next_trial(self):
        return self.queue.pop(0) if self.queue else self.new_trial()

    def on_result(self, trial, result):
        if trial.id == 3 and result["step"] == 2:
            self.last_info = {"reason": "below the median"}
            return Decision.STOP
        if trial.id == 5 and result["step"] == 3 and not self.exploited:
            donor = self.experiment.best_trial()  # the only finished trial that keeps a checkpoint
            new = {**donor.params, "lr": donor.params["lr"] * 1.2}
            self.exploited = self.experiment.exploit(trial, donor, new, reason="bottom quantile")
            self.queue.append(trial)
            return Decision.PAUSE
        if result["step"] == 2 and trial.id not in self.paused_once:
            self.paused_once.add(trial.id)
            self.queue.append(trial)
            self.last_info = {"reason": "rung 1"}
            return Decision.PAUSE
        return Decision.CONTINUE


class ScriptedPlugin:
    @hookimpl
    def register_schedulers(self, register):
        register("scripted", Scripted)


def _score(params: dict, step: int) -> float:
    return ((1 - math.exp(-step / 2)) * (1 - abs(math.log10(params["lr"]) + 2.5) / 3) + 0.02 * params["depth"]
            + (0.05 if params["opt"] == "adam" else 0.0))


def _save(exp, trial, step) -> str:
    path = exp.checkpoint_path(trial, step)
    staging = ckpt.staging_dir(path)
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "state.txt").write_text(str(step))
    ckpt.finalize(staging, path)
    return path


def build_varied_experiment(root: Path, *, fail: int | None = 7, num_trials: int = 8, steps: int = 6,
                            reporters=("jsonl", "csv"), extra_metrics=None, **tune) -> Path:
    """An ask/tell experiment with pauses, an early stop, a failure and a PBT-style exploit."""
    plugin_manager().register(ScriptedPlugin(), name="scripted-scheduler")
    cfg = {"OUTPUT_DIR": str(root), "TUNE": {
        "NAME": "exp", "TRAINABLE": "noop", "NUM_TRIALS": num_trials, "MAX_STEPS": steps, "SCHEDULER": "scripted",
        "SEED": 3, "REPORTERS": list(reporters), "SPACE": SPACE, **tune}}
    exp = Experiment(cfg)
    exp.start_experiment()
    while (trial := exp.ask()) is not None:
        if trial.id == fail:
            exp.fail(trial, "CUDA out of memory (simulated)")
            continue
        while True:
            step = trial.step + 1
            metrics = {"score": _score(trial.params, step), "loss": 2.0 / step, "epoch": 2 * step,
                       **(extra_metrics or {})}
            if exp.tell(trial, metrics, checkpoint=_save(exp, trial, step)) != Decision.CONTINUE:
                break
    exp.finish()
    return root / "exp"


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def running_best(values, mode="max"):
    out, best = [], None
    for v in values:
        best = v if best is None or (v > best if mode == "max" else v < best) else best
        out.append(best)
    return out


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """The varied experiment and its report (built once: plotting takes a few seconds)."""
    from reidplug.core import manager

    manager.reset_plugin_manager()
    exp_dir = build_varied_experiment(tmp_path_factory.mktemp("varied"))
    doc = build_report(exp_dir)
    manager.reset_plugin_manager()
    return exp_dir, doc


# ---------------------------------------------------------------------- the data behind each plot


@pytest.mark.slow  # the shared report takes several seconds to draw
def test_history_is_the_best_so_far_of_the_results(varied):
    exp_dir, doc = varied
    trials = read_csv(exp_dir / "results.csv")  # one row per trial: its last result
    scored = [(int(r["trial_id"]), float(r["score"])) for r in trials if r["score"] not in ("", "nan")]
    by_trial = doc["history"]["by_trial"]
    assert by_trial["trial_id"] == [t for t, _ in scored]
    assert by_trial["value"] == pytest.approx([v for _, v in scored])
    assert by_trial["best"] == pytest.approx(running_best([v for _, v in scored]))
    assert by_trial["best"][-1] == pytest.approx(max(v for _, v in scored))
    assert 7 not in by_trial["trial_id"]  # the failed trial has no result

    progress = read_csv(exp_dir / "progress.csv")  # one row per result, in order
    by_time = doc["history"]["by_time"]
    assert by_time["value"] == pytest.approx([float(r["score"]) for r in progress])
    assert by_time["trial_id"] == [int(r["trial_id"]) for r in progress]
    assert by_time["best"] == pytest.approx(running_best(by_time["value"]))
    assert by_time["time_s"] == sorted(by_time["time_s"]) and by_time["time_s"][0] >= 0
    assert doc["summary"]["best_trial"] == json.loads((exp_dir / "summary.json").read_text())["best_trial"]


@pytest.mark.slow  # the shared report takes several seconds to draw
def test_parallel_coordinates_scale_params_to_their_domains(varied):
    exp_dir, doc = varied
    rows = {int(r["trial_id"]): r for r in read_csv(exp_dir / "results.csv")}
    axes = [a["name"] for a in doc["parallel"]["axes"]]
    assert axes == ["lr", "opt", "wd", "depth"]
    lines = doc["parallel"]["lines"]
    assert sorted(ln["trial_id"] for ln in lines) == sorted(t for t, r in rows.items() if r["status"] != "ERROR")
    for ln in lines:
        row = rows[ln["trial_id"]]
        lr, opt, wd, depth = (float(row["param:lr"]), row["param:opt"], float(row["param:wd"]),
                              int(row["param:depth"]))
        expected = [math.log(lr / 1e-4) / math.log(1e-1 / 1e-4), (["sgd", "adam", "adamw"].index(opt) + 0.5) / 3,
                    wd / 0.1, (depth - 1 + 0.5) / 4]
        assert ln["unit"] == pytest.approx(expected)
        assert ln["metric"] == pytest.approx(float(row["score"]))
    opt_axis = doc["parallel"]["axes"][1]
    assert [label for _, label in opt_axis["ticks"]] == ["sgd", "adam", "adamw"]


@pytest.mark.slow  # the shared report takes several seconds to draw
def test_learning_curves_mark_the_schedulers_pauses_and_stops(varied):
    exp_dir, doc = varied
    progress = read_csv(exp_dir / "progress.csv")
    decisions = read_csv(exp_dir / "decisions.csv")
    curves = {c["trial_id"]: c for c in doc["curves"]["trials"]}
    for tid, curve in curves.items():
        mine = [r for r in progress if int(r["trial_id"]) == tid]
        assert curve["steps"] == [int(r["step"]) for r in mine]
        assert curve["values"] == pytest.approx([float(r["score"]) for r in mine])
        pauses = [int(d["step"]) for d in decisions if int(d["trial_id"]) == tid and d["decision"] == "PAUSE"]
        assert [p[0] for p in curve["pauses"]] == pauses
        for step, value in curve["pauses"]:
            assert value == pytest.approx(float(next(r["score"] for r in mine if int(r["step"]) == step)))
    assert curves[3]["stop"] == {"step": 2, "value": pytest.approx(curves[3]["values"][-1]),
                                 "reason": "below the median", "early": True}
    assert curves[1]["stop"]["reason"] == "max_steps" and not curves[1]["stop"]["early"]
    assert curves[7]["error"]["message"] == "CUDA out of memory (simulated)" and curves[7]["steps"] == []
    donor = json.loads((exp_dir / "pbt_lineage.jsonl").read_text())["donor"]
    assert curves[1]["pauses"] and curves[5]["exploits"][0]["donor"] == donor


@pytest.mark.slow  # the shared report takes several seconds to draw
def test_pbt_schedule_and_lineage_follow_the_exploits(varied):
    exp_dir, doc = varied
    lineage = [json.loads(line) for line in (exp_dir / "pbt_lineage.jsonl").read_text().splitlines()]
    assert len(lineage) == 1
    ex = lineage[0]
    pbt = doc["pbt"]
    assert pbt["ran"] and pbt["lineage"] == [{"trial_id": 5, "step": ex["step"], "donor": ex["donor"],
                                               "donor_step": ex["donor_step"]}]
    progress = [r for r in read_csv(exp_dir / "progress.csv") if r["trial_id"] == "5"]
    lr = pbt["schedule"]["lr"]["5"]
    # Before the exploit trial 5 trains with its own lr, after it with the donor's times 1.2.
    assert [p[0] for p in lr] == [int(r["step"]) for r in progress]
    before = [p for p in lr if p[2] == 0]
    after = [p for p in lr if p[2] == 1]
    assert [p[0] for p in before] == [1, 2, 3] and all(p[1] == pytest.approx(ex["old_params"]["lr"]) for p in before)
    assert after and all(p[1] == pytest.approx(ex["new_params"]["lr"]) for p in after)
    assert after[0][0] == ex["donor_step"] + 1
    assert pbt["log"] == {"lr": True, "opt": False, "wd": False, "depth": False}
    curve5 = next(c for c in doc["curves"]["trials"] if c["trial_id"] == 5)
    assert curve5["exploits"][0]["index"] == 3 and curve5["exploits"][0]["step"] == ex["donor_step"] + 1


@pytest.mark.slow  # the shared report takes several seconds to draw
def test_results_table_matches_results_csv(varied):
    exp_dir, doc = varied
    rows = read_csv(exp_dir / "results.csv")
    assert [r["trial_id"] for r in rows] == [str(r["trial_id"]) for r in doc["table"]]
    for csv_row, row in zip(rows, doc["table"]):
        assert csv_row["status"] == row["status"] and csv_row["step"] == str(row["step"])
        for key in ("score", "best_score", "param:lr", "param:wd"):
            if row[key] is None:
                assert csv_row[key] in ("", "nan")
            else:
                assert float(csv_row[key]) == pytest.approx(row[key])
        assert csv_row["param:opt"] == row["param:opt"] and csv_row["error"] == row["error"]


@pytest.mark.slow  # the shared report takes several seconds to draw
def test_html_embeds_every_image_and_the_json_parses(varied):
    exp_dir, doc = varied
    out = exp_dir / "report"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(f"{n}.png" for n in ("history", "parallel", "curves", "pbt", "importance"))
    html = (out / "report.html").read_text()
    for name in pngs:
        assert base64.b64encode((out / name).read_bytes()).decode() in html
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Best trial" in html and "best_config.yaml" not in html  # the config itself, not a pointer
    assert ">stopped (scripted)<" in html and "below the median" in html and ">failed<" in html
    best = json.loads((exp_dir / "summary.json").read_text())["best_params"]
    assert f"lr: {best['lr']:.5g}" in html or str(best["lr"]) in html
    data = json.loads((out / "report.json").read_text())
    assert data["summary"]["num_results"] == len(read_csv(exp_dir / "progress.csv"))
    assert data["history"]["by_trial"]["best"] == pytest.approx(doc["history"]["by_trial"]["best"])


def test_a_trial_that_spent_its_budget_completed_one_cut_by_the_scheduler_stopped(tmp_path):
    from reidplug.report.experiment_data import load
    from reidplug.report.series import curves, outcomes, summary, table

    exp = Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "asha", "TRAINABLE": "noop", "NUM_TRIALS": 4, "MAX_STEPS": 4, "SCHEDULER": "asha",
        "ASHA": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 2}, "REPORTERS": [],
        "SPACE": {"x": {"uniform": [0.0, 1.0]}}}})
    quality = {1: 1.0, 2: 0.1, 3: 1.1, 4: 1.2}
    while (trial := exp.ask()) is not None:
        while True:
            step = trial.step + 1
            # Trial 4's trainable ends on its own after one step, short of the budget.
            metrics = {"score": quality[trial.id] * step, **({"done": True} if trial.id == 4 else {})}
            if exp.tell(trial, metrics) != Decision.CONTINUE:
                break
    exp.finish()
    data = load(tmp_path / "asha")
    reasons = {d["trial_id"]: d["info"]["reason"] for d in data.decisions if d["decision"] == "STOP"}
    # ASHA itself ends the trials that reach its max_t, the last step: still completed trials. Trial 4's
    # stop carries ASHA's word for its rung; its result's done flag says that it completed.
    assert reasons[1] == reasons[3] == "max_t" and "below the rung 1" in reasons[2] and reasons[4] != "done"
    assert {t: o["label"] for t, o in outcomes(data).items()} == {
        1: "completed", 2: "stopped (ASHA)", 3: "completed", 4: "completed"}
    assert {c["trial_id"]: c["stop"]["early"] for c in curves(data)["trials"]} == {
        1: False, 2: True, 3: False, 4: False}
    rows = {r["trial_id"]: r for r in table(data)}
    assert rows[2]["outcome"] == "stopped (ASHA)" and rows[2]["stop_reason"] == reasons[2]
    assert rows[1]["outcome"] == "completed" and rows[1]["stop_reason"] == ""
    assert summary(data)["outcomes"] == {"completed": 3, "stopped (ASHA)": 1}
    build_report(tmp_path / "asha", plots_too=False)
    text = (tmp_path / "asha" / "report" / "report.html").read_text()
    assert "4 trials: 3 completed, 1 stopped (ASHA)." in text
    assert text.count("<td class='status completed'>completed</td>") == 3
    assert text.count("<td class='status stopped'>stopped (ASHA)<br>") == 1
    assert "score</b>, highest first: the value the trainable reports" in text


def test_short_names_are_the_shortest_tails_no_other_key_ends_with():
    from reidplug.report.names import short_names, wrap

    keys = ["SOLVER.BASE_LR", "MODEL.LOSSES.TRI.MARGIN", "MODEL.HEADS.MARGIN", "lr", "A.B", "B"]
    assert short_names(keys) == {"SOLVER.BASE_LR": "BASE_LR", "MODEL.LOSSES.TRI.MARGIN": "TRI.MARGIN",
                                 "MODEL.HEADS.MARGIN": "HEADS.MARGIN", "lr": "lr", "A.B": "A.B", "B": "B"}
    assert wrap("IMS_PER_BATCH") == "IMS_PER_BATCH"
    assert wrap("WEIGHT_DECAY_NORM_FACTOR") == "WEIGHT_DECAY_\nNORM_FACTOR"


def test_parallel_coordinates_name_each_axis_in_full(tmp_path, monkeypatch):
    from reidplug.report import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    keys = ["SOLVER.BASE_LR", "SOLVER.IMS_PER_BATCH", "DATALOADER.NUM_INSTANCE", "MODEL.LOSSES.TRI.MARGIN"]
    axes = [{"name": k, "kind": "uniform", "ticks": [[0.0, "0"], [1.0, "1"]]} for k in keys]
    series = {"metric": "score", "mode": "max", "axes": axes,
              "lines": [{"trial_id": 1, "unit": [0.2, 0.4, 0.6, 0.8], "metric": 1.0},
                        {"trial_id": 2, "unit": [0.8, 0.6, 0.4, 0.2], "metric": 2.0}]}
    plots.parallel(series, tmp_path / "parallel.png")
    labels = [t.get_text() for t in drawn[0].axes[0].get_xticklabels()]
    assert [label.split("\n")[0] for label in labels] == ["BASE_LR", "IMS_PER_BATCH", "NUM_INSTANCE", "MARGIN"]
    assert not any("…" in label for label in labels)


# ---------------------------------------------------------------------- importance


def test_importance_finds_the_parameter_that_matters():
    from reidplug.core.space import parse_domain
    from reidplug.report.importance import forest_importance

    rng = np.random.default_rng(0)
    x = rng.random((60, 3))
    y = np.sin(6 * x[:, 0]) + 0.05 * x[:, 1]  # the third parameter does nothing
    domains = [parse_domain({"uniform": [0, 1]}, key=k) for k in "abc"]
    result = forest_importance(x, y, ["a", "b", "c"], domains)
    a, b, c = result["importance"]
    assert a > 0.7 and b < 0.1 and c < 0.05 and "fANOVA" in result["method"]


def test_importance_needs_enough_trials(tmp_path):
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {"NAME": "exp", "TRAINABLE": "noop", "NUM_TRIALS": 3,
                                                 "REPORTERS": [], "SPACE": {"x": {"uniform": [0.0, 1.0]}}}}
    exp = Experiment(cfg)
    while (trial := exp.ask()) is not None:
        exp.tell(trial, {"score": trial.params["x"]})
    exp.finish()
    from reidplug.report.experiment_data import load
    from reidplug.report.importance import importance

    result = importance(load(tmp_path / "exp"))
    assert result["importance"] == [] and "at least 5" in result["note"]


# ---------------------------------------------------------------------- the command


def test_report_command_json_and_out(tmp_path):
    exp = Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "fifo", "TRAINABLE": "noop", "NUM_TRIALS": 3, "MAX_STEPS": 2, "REPORTERS": [],
        "SPACE": {"x": {"uniform": [0.0, 1.0]}}}})
    while (trial := exp.ask()) is not None:
        while exp.tell(trial, {"score": trial.params["x"] * (trial.step + 1)}) == Decision.CONTINUE:
            pass
    exp.finish()
    runner = CliRunner()
    result = runner.invoke(report_command, [str(tmp_path / "fifo"), "--json", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["summary"]["state"] == "finished" and data["summary"]["num_results"] == 6
    assert data["pbt"]["ran"] is False and "no PBT" in data["notes"]["pbt"]
    assert "at least 5" in data["notes"]["importance"]
    assert (tmp_path / "r" / "report.html").is_file() and not (tmp_path / "r" / "pbt.png").exists()
    assert "no PBT exploit" in (tmp_path / "r" / "report.html").read_text()
    text = runner.invoke(report_command, [str(tmp_path / "fifo"), "--no-plots"])
    assert text.exit_code == 0 and "Report: " in text.output and "Best trial" in text.output
    assert (tmp_path / "fifo" / "report" / "report.html").is_file()
    with pytest.raises(UserError, match="not an experiment folder"):
        runner.invoke(report_command, [str(tmp_path)], catch_exceptions=False)


def test_report_command_is_a_plugin():
    import click

    from reidplug.core.manager import DEFAULT_PLUGINS, get_plugin_manager

    group = click.Group("reidplug")
    assert "reidplug.plugins.report_command" in DEFAULT_PLUGINS
    pm = get_plugin_manager()
    pm.hook.register_commands(cli=group)
    assert group.commands["report"] is report_command


def _journal_counts(db: Path) -> tuple[int, int]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return (conn.execute("SELECT COUNT(*) FROM results").fetchone()[0],
                    conn.execute("SELECT COUNT(*) FROM trials WHERE status = 'TERMINATED'").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0, 0


@pytest.mark.slow
def test_report_on_a_running_experiment(tmp_path):
    cfg = tmp_path / "slow.yml"
    cfg.write_text(f"""\
OUTPUT_DIR: {tmp_path}
TUNE:
  NAME: exp
  TRAINABLE: trainables_for_tests:Counter
  NUM_TRIALS: 4
  MAX_CONCURRENT: 2
  MAX_STEPS: 6
  REPORTERS: [csv]
  SPACE:
    x: {{uniform: [0.0, 1.0]}}
""")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               REIDPLUG_TEST_DELAY="0.25")
    proc = subprocess.Popen([sys.executable, "-m", "reidplug", "run", str(cfg), "--quiet", "--no-report"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "exp" / "experiment.db"
    try:
        deadline = time.time() + 120
        while _journal_counts(db)[0] < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, "the experiment ended before the report could read it mid-way"
        result = CliRunner().invoke(report_command, [str(tmp_path / "exp"), "--json"], catch_exceptions=False)
        live = json.loads(result.output)
        assert proc.poll() is None or _journal_counts(db)[0] > live["summary"]["num_results"]
    finally:
        out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    total = 4 * 6
    assert 3 <= live["summary"]["num_results"] < total
    assert live["summary"]["state"] == "running or interrupted"
    assert live["summary"]["status"].get("RUNNING", 0) >= 1
    assert live["history"]["by_time"]["best"] == running_best(live["history"]["by_time"]["value"])
    # The experiment was not disturbed, and a report of the finished one sees everything.
    final = json.loads(CliRunner().invoke(report_command, [str(tmp_path / "exp"), "--json", "--no-plots"]).output)
    assert final["summary"]["state"] == "finished" and final["summary"]["num_results"] == total
    assert final["summary"]["status"] == {"TERMINATED": 4}
    assert len(read_csv(tmp_path / "exp" / "progress.csv")) == total


# ---------------------------------------------------------------------- Re-ID visuals


def _person(path: Path, pid: int, cam: int) -> None:
    from PIL import Image

    Image.new("RGB", (32, 64), (40 * pid % 256, 80 + 30 * cam, 200 - 20 * pid)).save(path)


@pytest.fixture
def gallery(tmp_path):
    q_pids, q_cams = np.array([0, 1, 2]), np.array([0, 0, 1])
    g_pids, g_cams = np.repeat(np.arange(4), 3), np.tile([0, 1, 2], 4)
    q_paths, g_paths = [], []
    for i, (p, c) in enumerate(zip(q_pids, q_cams)):
        q_paths.append(tmp_path / f"q{i}.jpg")
        _person(q_paths[-1], p, c)
    for i, (p, c) in enumerate(zip(g_pids, g_cams)):
        g_paths.append(tmp_path / f"g{i}.jpg")
        _person(g_paths[-1], p, c)
    # Query 0 (id 0, cam 0) is nearest to gallery 0 (id 0, cam 0: excluded), then 5 (id 1), then 1 (id 0).
    dist = np.full((3, 12), 5.0) + np.arange(12) * 0.01
    dist[0, 0], dist[0, 5], dist[0, 1], dist[0, 2] = 0.0, 0.1, 0.2, 0.3
    return dist, q_paths, g_paths, q_pids, g_pids, q_cams, g_cams


def test_rank_list_leaves_out_same_camera_matches(gallery):
    from reidplug.report.reid_vis import average_precision, rank_list

    dist, _, _, q_pids, g_pids, q_cams, g_cams = gallery
    order, matches = rank_list(dist[0], 0, 0, g_pids, g_cams, topk=4)
    assert order.tolist() == [5, 1, 2, 3] and matches.tolist() == [False, True, True, False]
    assert average_precision(dist[0], 0, 0, g_pids, g_cams) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_draw_rank_lists_borders_show_right_and_wrong(gallery, tmp_path):
    from PIL import Image

    from reidplug.report.reid_vis import BORDER, GREEN, QUERY, RED, cell_box, draw_rank_lists, rank_list

    dist, q_paths, g_paths, q_pids, g_pids, q_cams, g_cams = gallery
    paths = draw_rank_lists(dist, q_paths, g_paths, q_pids, g_pids, q_cams, g_cams, tmp_path / "vis",
                            num_queries=3, topk=5)
    assert [p.name for p in paths] == ["rank_00000_q0.png", "rank_00001_q1.png", "rank_00002_q2.png"]
    for qi, path in enumerate(paths):
        im = Image.open(path).convert("RGB")
        order, matches = rank_list(dist[qi], q_pids[qi], q_cams[qi], g_pids, g_cams, topk=5)
        x0, y0, _, _ = cell_box(0)
        assert im.getpixel((x0 + 1, y0 + 1)) == QUERY
        for k, (gi, ok) in enumerate(zip(order, matches), start=1):
            x0, y0, x1, y1 = cell_box(k)
            assert im.getpixel((x0 + 1, (y0 + y1) // 2)) == (GREEN if ok else RED)
            # The gallery image itself sits inside the border.
            expected = Image.open(g_paths[gi]).convert("RGB").getpixel((0, 0))
            assert im.getpixel((x0 + BORDER + 2, y0 + BORDER + 2)) == expected


def test_plot_cmc_draws_the_curve(tmp_path):
    import matplotlib.image as mpimg

    from reidplug.report.reid_vis import cmc_points, plot_cmc

    cmc = np.array([0.5, 0.7, 0.8, 0.9, 0.95, 1.0])
    ranks, values = cmc_points(cmc, max_rank=4)
    assert ranks.tolist() == [1, 2, 3, 4] and values.tolist() == pytest.approx([50, 70, 80, 90])
    assert cmc_points(cmc * 100)[1].tolist() == pytest.approx((cmc * 100).tolist())
    path = plot_cmc(cmc, tmp_path / "cmc.png", label="test")
    image = mpimg.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 300
    with pytest.raises(ValueError):
        plot_cmc(np.array([]), tmp_path / "empty.png")
