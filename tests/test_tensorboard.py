"""The TensorBoard reporter's event files, read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from optional import need

need("tensorboard")

from test_report import build_varied_experiment  # noqa: E402


def accumulator(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def hparams_content(ea) -> dict:
    from tensorboard.plugins.hparams import metadata

    content = ea.PluginTagToContent(metadata.PLUGIN_NAME)
    out = {}
    if metadata.EXPERIMENT_TAG in content:
        out["experiment"] = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    if metadata.SESSION_START_INFO_TAG in content:
        out["start"] = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    if metadata.SESSION_END_INFO_TAG in content:
        out["end"] = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    return out


def hp_value(value):
    kind = value.WhichOneof("kind")
    return getattr(value, kind)


@pytest.fixture(scope="module")
def tb_experiment(tmp_path_factory):
    from reidplug.core import manager

    manager.reset_plugin_manager()
    exp_dir = build_varied_experiment(tmp_path_factory.mktemp("tb"), reporters=("tensorboard",),
                                      extra_metrics={"iter_per_s": 12.5})
    manager.reset_plugin_manager()
    return exp_dir


def test_scalars_per_trial_equal_the_journal(tb_experiment):
    exp_dir = tb_experiment
    conn = sqlite3.connect(f"file:{exp_dir / 'experiment.db'}?mode=ro", uri=True)
    results = conn.execute("SELECT trial_id, step, metrics FROM results ORDER BY seq").fetchall()
    statuses = dict(conn.execute("SELECT id, status FROM trials"))
    conn.close()
    runs = sorted(p.name for p in (exp_dir / "tensorboard").iterdir() if p.is_dir())
    assert runs == [f"trial_{i:04d}" for i in sorted(statuses)]
    for tid in statuses:
        ea = accumulator(exp_dir / "tensorboard" / f"trial_{tid:04d}")
        mine = [(step, json.loads(m)) for t, step, m in results if t == tid]
        if not mine:
            assert "score" not in ea.Tags()["scalars"]
            continue
        for tag in ("score", "loss", "epoch", "iter_per_s", "time_total_s"):
            events = ea.Scalars(tag)
            assert [e.step for e in events] == [s for s, _ in mine]
            assert [e.value for e in events] == pytest.approx([m[tag] for _, m in mine], rel=1e-6)
        for e, (_, m) in zip(ea.Scalars("score"), mine):
            assert e.wall_time == pytest.approx(m["timestamp"])
        assert not set(ea.Tags()["scalars"]) & {"step", "trial_id", "timestamp"}


def test_hparams_view_has_the_space_the_metric_and_every_session(tb_experiment):
    exp_dir = tb_experiment
    from tensorboard.plugins.hparams import api_pb2

    experiment = hparams_content(accumulator(exp_dir / "tensorboard"))["experiment"]
    infos = {h.name: h for h in experiment.hparam_infos}
    assert list(infos) == ["lr", "opt", "wd", "depth"]
    assert (infos["lr"].domain_interval.min_value, infos["lr"].domain_interval.max_value) == (1e-4, 1e-1)
    assert [v.string_value for v in infos["opt"].domain_discrete.values] == sorted(["sgd", "adam", "adamw"])
    assert (infos["depth"].domain_interval.min_value, infos["depth"].domain_interval.max_value) == (1, 4)
    assert [m.name.tag for m in experiment.metric_infos] == ["score"]

    lineage = json.loads((exp_dir / "pbt_lineage.jsonl").read_text())
    conn = sqlite3.connect(f"file:{exp_dir / 'experiment.db'}?mode=ro", uri=True)
    trials = {tid: (json.loads(p), status) for tid, p, status in conn.execute("SELECT id, params, status FROM trials")}
    conn.close()
    for tid, (params, status) in trials.items():
        content = hparams_content(accumulator(exp_dir / "tensorboard" / f"trial_{tid:04d}"))
        start = content["start"]
        assert start.group_name == f"trial_{tid:04d}"
        # The params the trial started with: a PBT exploit changes them later (see the hparam/ scalars).
        expected = lineage["old_params"] if tid == lineage["trial_id"] else params
        assert {k: hp_value(v) for k, v in start.hparams.items()} == pytest.approx(expected)
        wanted = api_pb2.STATUS_FAILURE if status == "ERROR" else api_pb2.STATUS_SUCCESS
        assert content["end"].status == wanted


def test_changing_params_are_logged_as_scalars(tb_experiment):
    exp_dir = tb_experiment
    lineage = json.loads((exp_dir / "pbt_lineage.jsonl").read_text())
    ea = accumulator(exp_dir / "tensorboard" / f"trial_{lineage['trial_id']:04d}")
    lr = ea.Scalars("hparam/lr")
    assert lr and lr[-1].value == pytest.approx(lineage["new_params"]["lr"], rel=1e-6)
    assert all(e.step > lineage["donor_step"] for e in lr)
    assert "hparam/lr" not in accumulator(exp_dir / "tensorboard" / "trial_0001").Tags()["scalars"]


@pytest.mark.slow
def test_the_reporter_needs_neither_torch_nor_tensorflow(tmp_path):
    code = f"""
import sys
from reidplug.core.experiment import Experiment
exp = Experiment({{"OUTPUT_DIR": {str(tmp_path)!r}, "TUNE": {{"NAME": "exp", "TRAINABLE": "noop", "NUM_TRIALS": 2,
                 "REPORTERS": ["tensorboard"], "SPACE": {{"x": {{"uniform": [0.0, 1.0]}}}}}}}})
exp.start_experiment()
while (t := exp.ask()) is not None:
    exp.tell(t, {{"score": t.params["x"]}})
exp.finish()
bad = [m for m in ("torch", "tensorflow") if m in sys.modules]
print("imported:", bad)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "imported: []" in proc.stdout
    assert len(list((tmp_path / "exp" / "tensorboard").glob("trial_*/events.out.tfevents.*"))) == 2
