"""The ray executor end to end on a real local Ray instance (2 CPUs, 1 logical GPU)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from optional import need
from trainables_for_tests import Counter

from reidplug.core.errors import ConfigError
from reidplug.core.journal import Journal
from reidplug.core.tuner import Tuner

TIME_KEYS = {"time_total_s", "timestamp"}


class WhereAmI(Counter):
    """A Counter that also reports where it runs: process, Ray actor, visible GPUs."""

    def step(self):
        import ray

        print(f"trial {self.context.trial_id} step {self.count + 1}", flush=True)
        metrics = super().step()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        group = ray.util.get_current_placement_group()
        bundle = group.bundle_specs[0] if group is not None else {}
        metrics.update(
            group_cpus=bundle.get("CPU", 0), group_gpus=bundle.get("GPU", 0),
            pid=os.getpid(),
            in_actor=int(ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None),
            num_visible_gpus=len([d for d in (visible or "").split(",") if d.strip()]),
            gpu_id=int(visible) if visible and visible.isdigit() else -1,
        )
        return metrics


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module, started the way ADDRESS: local starts one."""
    ray = need("ray")
    from reidplug.plugins.executors.ray import connect

    started = connect("local", num_cpus=2, num_gpus=1)  # the GPU is logical: Ray only hands out its id
    yield ray
    if started:
        ray.shutdown()


def make_cfg(tmp_path, name="exp", **tune):
    base = {"NAME": name, "TRAINABLE": "trainables_for_tests:Counter", "EXECUTOR": "ray", "NUM_TRIALS": 4,
            "MAX_CONCURRENT": 2, "MAX_STEPS": 3, "REPORTERS": ["jsonl", "csv"], "SEED": 3,
            "SPACE": {"x": {"uniform": [0.0, 1.0]}}}
    base.update(tune)
    return {"OUTPUT_DIR": str(tmp_path), "TUNE": base}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metrics_of(exp_dir, tid):
    return [json.loads(line) for line in (exp_dir / f"trial_{tid:04d}" / "metrics.jsonl").read_text().splitlines()]


def has_scheduler(name: str) -> bool:
    from reidplug.core.manager import plugin_manager

    return name in plugin_manager().registry("scheduler")


# ---------------------------------------------------------------- without a Ray instance


def test_missing_ray_is_one_line_naming_the_file_and_key(tmp_path):
    (tmp_path / "config.yml").write_text(textwrap.dedent(f"""\
        OUTPUT_DIR: {tmp_path / "out"}
        TUNE:
          TRAINABLE: noop
          EXECUTOR: ray
          NUM_TRIALS: 1
          SPACE: {{x: {{uniform: [0.0, 1.0]}}}}
        """))
    code = "import sys; sys.modules['ray'] = None; from reidplug.cli import main; main(['run', 'config.yml'])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].endswith("config.yml: TUNE.EXECUTOR: the ray executor needs Ray: pip install 'reidplug[ray]'")


def test_a_bad_address_is_a_config_error(tmp_path):
    need("ray")
    cfg = make_cfg(tmp_path)
    cfg["TUNE"]["RAY"] = {"ADDRESS": "the-cluster"}
    with pytest.raises(ConfigError, match=r"TUNE.RAY.ADDRESS: expected 'local', 'auto', 'ray://HOST:PORT'"):
        Tuner(cfg)


def test_cluster_capacity_packs_trials_per_node():
    from reidplug.plugins.executors.ray import cluster_capacity

    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}},
             {"Alive": True, "Resources": {"CPU": 3.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    assert cluster_capacity(nodes, 1, 0) == 11
    assert cluster_capacity(nodes, 2, 0) == 5  # 4 + 1: a trial never spans two nodes
    assert cluster_capacity(nodes, 1, 0.5) == 4  # two trials share each GPU
    assert cluster_capacity(nodes, 0.25, 0.25) == 8 + 0  # the CPU-only node holds no GPU trial
    assert cluster_capacity(nodes, 1, 1.5) == 1


# ---------------------------------------------------------------- on Ray


@pytest.mark.slow
def test_fifo_trials_run_in_actors_and_stream_results(ray_instance, tmp_path):
    cfg = make_cfg(tmp_path, TRAINABLE="test_ray_executor:WhereAmI")
    summary = Tuner(cfg).run()
    exp = tmp_path / "exp"
    assert summary["status"] == {"TERMINATED": 4}
    pids = set()
    for tid in range(1, 5):
        metrics = metrics_of(exp, tid)
        assert [m["step"] for m in metrics] == [1, 2, 3] and [m["count"] for m in metrics] == [1, 2, 3]
        assert all(m["in_actor"] == 1 and m["num_visible_gpus"] == 0 for m in metrics)
        assert all(m["pid"] != os.getpid() for m in metrics)
        pids |= {m["pid"] for m in metrics}
        log = (exp / f"trial_{tid:04d}" / "log.txt").read_text()
        assert f"trial {tid} step 3" in log  # the trial's output went to its own log
    assert len(pids) == 2  # two actors, each serving one trial after another
    best = yaml.safe_load((exp / "best_config.yaml").read_text())
    assert best["trial"] == summary["best_trial"]


@pytest.mark.slow
def test_two_trials_share_a_gpu_through_ray(ray_instance, tmp_path):
    cfg = make_cfg(tmp_path, TRAINABLE="test_ray_executor:WhereAmI", MAX_CONCURRENT=4, MAX_STEPS=2,
                   RESOURCES_PER_TRIAL={"CPU": 1, "GPU": 0.5})
    summary = Tuner(cfg).run()
    assert summary["status"] == {"TERMINATED": 4}
    seen = [m for tid in range(1, 5) for m in metrics_of(tmp_path / "exp", tid)]
    # Ray set CUDA_VISIBLE_DEVICES of each actor to the one GPU, which two actors hold at a time.
    assert all(m["num_visible_gpus"] == 1 and m["gpu_id"] == 0 for m in seen)
    assert len({m["pid"] for m in seen}) == 2
    # Each actor ran inside a placement group reserving its trial's whole share.
    assert all((m["group_cpus"], m["group_gpus"]) == (1, 0.5) for m in seen), seen


@pytest.mark.slow
def test_each_trial_holds_a_placement_group_removed_at_the_end(ray_instance, tmp_path):
    from ray.util import placement_group_table

    before = {k for k, v in placement_group_table().items() if v["state"] != "REMOVED"}
    cfg = make_cfg(tmp_path, TRAINABLE="test_ray_executor:WhereAmI", NUM_TRIALS=2, MAX_STEPS=2,
                   RESOURCES_PER_TRIAL={"CPU": 1, "GPU": 1})
    summary = Tuner(cfg).run()
    assert summary["status"] == {"TERMINATED": 2}
    seen = [m for tid in (1, 2) for m in metrics_of(tmp_path / "exp", tid)]
    assert all((m["group_cpus"], m["group_gpus"], m["num_visible_gpus"]) == (1, 1, 1) for m in seen), seen
    table = placement_group_table()
    made = [v for k, v in table.items() if k not in before]
    assert made and all(v["strategy"] == "STRICT_PACK" for v in made)
    assert all(v["state"] == "REMOVED" for v in made), made


@pytest.mark.slow
def test_an_exception_in_the_trainable_is_an_error_with_its_traceback(ray_instance, tmp_path):
    cfg = make_cfg(tmp_path, TRAINABLE="trainables_for_tests:failing_when_big", NUM_TRIALS=6, MAX_STEPS=1)
    Tuner(cfg).run()
    rows = read_csv(tmp_path / "exp" / "results.csv")
    assert len(rows) == 6
    for r in rows:
        assert (r["status"] == "ERROR") == (float(r["param:x"]) > 0.5)
        if r["status"] == "ERROR":
            text = (tmp_path / "exp" / f"trial_{int(r['trial_id']):04d}" / "error.txt").read_text()
            assert "Traceback" in text and "ValueError: x=" in text
    assert Journal(tmp_path / "exp" / "experiment.db").events("retry") == []  # not a fault: no retry


@pytest.mark.slow
def test_a_killed_actor_is_retried_from_its_checkpoint(ray_instance, tmp_path):
    cfg = make_cfg(tmp_path, TRAINABLE="trainables_for_tests:DiesOnce", NUM_TRIALS=2, MAX_STEPS=4, MAX_FAILURES=1)
    summary = Tuner(cfg).run()
    assert summary["status"] == {"TERMINATED": 2}
    journal = Journal(tmp_path / "exp" / "experiment.db")
    retries = journal.events("retry")
    assert sorted(e["trial_id"] for e in retries) == [1, 2]
    assert all(e["message"].startswith("Ray actor died: ActorDiedError") for e in retries)
    for tid in (1, 2):
        metrics = metrics_of(tmp_path / "exp", tid)
        assert [m["step"] for m in metrics] == [1, 2, 3, 4]
        assert [m["count"] for m in metrics] == [1, 2, 3, 4]  # restored from the step-1 checkpoint
    assert all(t.num_failures == 1 for t in journal.load_trials().values())


def run_and_read(tmp_path, name, **tune) -> dict:
    """Run an experiment; return what must not depend on the executor (no times, no paths)."""
    summary = Tuner(make_cfg(tmp_path, name=name, **tune)).run()
    exp = tmp_path / name
    journal = Journal(exp / "experiment.db")
    results = sorted(((r["trial_id"], r["step"], {k: v for k, v in r["metrics"].items() if k not in TIME_KEYS})
                      for r in journal.results()), key=lambda r: r[:2])
    return {
        "summary": {k: summary[k] for k in ("status", "best_trial", "best_params", "num_trials")},
        "results": results,
        "decisions": [(d["trial_id"], d["step"], d["decision"], d["info"]) for d in journal.decisions()],
        "events": [(e["kind"], e["trial_id"]) for e in journal.events() if e["kind"] != "end"],
        "checkpoints": sorted((tid, step) for tid, step, _ in journal.checkpoints(status=None)),
        "table": [{k: v for k, v in row.items() if k not in TIME_KEYS} for row in read_csv(exp / "results.csv")],
        "best_config": (exp / "best_config.yaml").read_text(),
    }


@pytest.mark.slow
def test_local_and_ray_give_the_same_results_journal_and_best_config(ray_instance, tmp_path):
    local = run_and_read(tmp_path, "local", EXECUTOR="local", NUM_TRIALS=5, CHECKPOINT_FREQ=2)
    ray = run_and_read(tmp_path, "ray", EXECUTOR="ray", NUM_TRIALS=5, CHECKPOINT_FREQ=2)
    local["decisions"].sort(key=lambda d: d[:2])  # two at a time: the order across trials may differ
    ray["decisions"].sort(key=lambda d: d[:2])
    local["events"].sort(key=str)
    ray["events"].sort(key=str)
    assert local["checkpoints"]  # CHECKPOINT_FREQ 2: step 2 of every trial was saved
    assert ray == local


@pytest.mark.slow
def test_asha_pauses_and_resumes_trials_through_checkpoints_like_local(ray_instance, tmp_path):
    if not has_scheduler("asha"):
        pytest.skip("the asha scheduler is not registered in this checkout yet")
    tune = dict(SCHEDULER="asha", ASHA={"TYPE": "promotion", "REDUCTION_FACTOR": 2}, NUM_TRIALS=6, MAX_STEPS=4,
                MAX_CONCURRENT=1)  # one at a time: the same order of events with either executor
    local = run_and_read(tmp_path, "local", EXECUTOR="local", **tune)
    ray = run_and_read(tmp_path, "ray", EXECUTOR="ray", **tune)
    assert ray == local
    paused = {tid for kind, tid in ray["events"] if kind == "paused"}
    resumed = {tid for tid, step, _ in ray["results"] if tid in paused and step > 1}
    assert paused and resumed
    # Counter counts from its checkpoint: a resumed trial that restarted from zero would lag behind its step.
    assert all(metrics["count"] == step for _, step, metrics in ray["results"])


@pytest.mark.slow
def test_the_executor_protocol_save_step_kill_release(ray_instance, tmp_path):
    from reidplug.core import checkpoints
    from reidplug.core.executor import ErrorEvent, LaunchSpec, ResultEvent, SavedEvent
    from reidplug.core.trainable import TrialContext
    from reidplug.plugins.executors.ray import RayExecutor

    def next_event(executor):
        for _ in range(200):
            events = executor.poll(timeout=0.5)
            if events:
                assert len(events) == 1
                return events[0]
        raise AssertionError("no event")

    executor = RayExecutor(max_concurrent=3, resources={"cpu": 1, "gpu": 0}, experiment_dir=str(tmp_path))
    executor.start()
    try:
        assert executor.free_slots() == 2  # 2 CPUs hold 2 one-CPU trials, whatever MAX_CONCURRENT says
        context = TrialContext(trial_id=7, trial_dir=str(tmp_path / "trial_0007"), experiment_dir=str(tmp_path))
        executor.launch(LaunchSpec(7, "trainables_for_tests:Counter", {"x": 0.5}, context))
        assert executor.running() == [7] and executor.free_slots() == 1
        event = next_event(executor)
        assert isinstance(event, ResultEvent) and event.step == 1 and event.metrics["count"] == 1
        executor.save(7, str(tmp_path / "saved"))
        event = next_event(executor)
        assert isinstance(event, SavedEvent) and event.checkpoint == str(tmp_path / "saved")
        assert checkpoints.verify(tmp_path / "saved") is None and (tmp_path / "saved" / "count.txt").read_text() == "1"
        executor.step(7, save_to=str(tmp_path / "after-2"))
        event = next_event(executor)
        assert isinstance(event, ResultEvent) and event.step == 2 and event.checkpoint == str(tmp_path / "after-2")
        executor.kill_worker(7)  # what a lost node looks like to the loop
        for _ in range(50):  # ray.kill is asynchronous: a step may still get through before it lands
            executor.step(7)
            event = next_event(executor)
            if not isinstance(event, ResultEvent):
                break
        assert isinstance(event, ErrorEvent) and event.fault and "ActorDiedError" in event.message
        executor.release(7)
        assert executor.running() == [] and executor.free_slots() == 2
    finally:
        executor.shutdown()


@pytest.mark.slow
def test_pbt_exploits_through_checkpoints_like_local(ray_instance, tmp_path):
    if not has_scheduler("pbt"):
        pytest.skip("the pbt scheduler is not registered in this checkout yet")
    tune = dict(SCHEDULER="pbt", PBT={"POPULATION": 4, "QUANTILE_FRACTION": 0.5}, NUM_TRIALS=4, MAX_STEPS=5,
                MAX_CONCURRENT=1)  # one at a time: the same order of events with either executor
    local = run_and_read(tmp_path, "local", EXECUTOR="local", **tune)
    ray = run_and_read(tmp_path, "ray", EXECUTOR="ray", **tune)
    assert ray == local
    assert "ERROR" not in ray["summary"]["status"]
    assert any(kind == "exploit" for kind, _ in ray["events"])
    # A recipient goes on from its copy of the donor's checkpoint, so Counter's count follows the step.
    assert all(metrics["count"] == step for _, step, metrics in ray["results"])


@pytest.mark.slow
def test_the_shared_storage_probe_asks_every_node(ray_instance, tmp_path):
    from reidplug.plugins.executors.ray import nodes_not_seeing

    (tmp_path / "probe").touch()
    assert nodes_not_seeing(ray_instance, str(tmp_path / "probe")) == []
    node = ray_instance.nodes()[0]["NodeManagerAddress"]
    assert nodes_not_seeing(ray_instance, str(tmp_path / "not-there")) == [node]
