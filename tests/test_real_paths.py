"""The paths a user takes: `reidplug run` on an empty cache with data-loader workers, Ctrl-C from a
terminal (SIGINT to the whole process group), and a killed experiment process.

Each test runs the installed `reidplug` command on the shipped quickstart config, shrunk in size
only (identities, image size, epochs), with DATALOADER.NUM_WORKERS > 0.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REIDPLUG = str(Path(sys.executable).with_name("reidplug"))
QUICKSTART = str(ROOT / "configs" / "quickstart.yml")

# Sizes only: the quickstart's searcher, scheduler, space, executor and trainable stay as shipped.
SMALL = [
    "DATASETS.SYNTH.IDS=40", "DATASETS.SYNTH.CAMS=3", "DATASETS.SYNTH.HEIGHT=32", "DATASETS.SYNTH.WIDTH=16",
    "INPUT.SIZE_TRAIN=[32,16]", "INPUT.SIZE_TEST=[32,16]", "INPUT.PADDING.SIZE=2",
    "SOLVER.MAX_EPOCH=4", "SOLVER.STEPS=[3]", "SOLVER.WARMUP_ITERS=5", "SOLVER.CHECKPOINT_PERIOD=2",
    "TEST.EVAL_PERIOD=2",
]

def _env(cache: Path) -> dict:
    env = dict(os.environ, REIDPLUG_CACHE=str(cache), PYTHONUNBUFFERED="1")
    env.pop("REIDPLUG_QUIET", None)
    return env


def _start(args, cache: Path, log: Path) -> subprocess.Popen:
    # A session of its own: the test can signal the whole group, as a terminal's Ctrl-C does.
    return subprocess.Popen([REIDPLUG, *args], env=_env(cache), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=ROOT)


def _results(folder: Path) -> list[tuple]:
    with open(folder / "results.csv") as f:
        rows = list(csv.DictReader(f))
    return sorted((r["trial_id"], r["status"], r["step"], r["score"]) for r in rows)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids) -> list[str]:
    """`ps` lines of the pids still running (zombies waiting for a reaper are not running)."""
    if not pids:
        return []
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-p", ",".join(map(str, pids))],
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1][0] != "Z"]


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


@pytest.mark.slow
def test_search_on_an_empty_cache_with_loader_workers(tmp_path):
    """The reported failure: every trial died with 'daemonic processes are not allowed to have children'."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ["run", QUICKSTART, *SMALL, "DATALOADER.NUM_WORKERS=2", "TUNE.NUM_TRIALS=2", f"OUTPUT_DIR={out}",
            "--no-report"]
    done = subprocess.run([REIDPLUG, *args], env=_env(cache), capture_output=True, text=True, timeout=400, cwd=ROOT)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-3000:]
    assert "failed" not in text and "Traceback" not in text, text[-3000:]
    rows = _results(out / "quickstart")
    assert len({r[0] for r in rows}) == 2 and all(r[3] for r in rows), rows
    # The set was generated once, in the experiment process (with its progress line), not by the trials.
    assert "synthesising" in text
    for log in (out / "quickstart").glob("trial_*/log.txt"):
        assert "synthesising" not in log.read_text()


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_then_resume_gives_the_uninterrupted_results(tmp_path):
    cache = tmp_path / "cache"
    common = [*SMALL, "DATALOADER.NUM_WORKERS=2", "TUNE.NUM_TRIALS=3", "TUNE.SCHEDULER=fifo", "--no-report"]
    # FIFO: ASHA's decisions depend on the order results arrive in, which an interrupt changes.

    straight = tmp_path / "straight"
    done = subprocess.run([REIDPLUG, "run", QUICKSTART, *common, f"OUTPUT_DIR={straight}"], env=_env(cache),
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    out, log = tmp_path / "interrupted", tmp_path / "run.log"
    proc = _start(["run", QUICKSTART, *common, f"OUTPUT_DIR={out}", "TUNE.NAME=ctrlc"], cache, log)
    folder = out / "ctrlc"
    _wait_for(lambda: (folder / "results.jsonl").is_file() and (folder / "results.jsonl").read_text().strip(),
              300, "a first result", proc, log)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "KeyboardInterrupt" not in text and "failed" not in text, text[-3000:]
    # The hint names the folder, so it resumes this experiment and not the one the config would name.
    assert f"reidplug resume {folder}" in text, text[-1500:]

    resumed = subprocess.run([REIDPLUG, "resume", str(folder), "--no-report"], env=_env(cache),
                             capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert _results(folder) == _results(straight / "quickstart")


@pytest.mark.slow
def test_a_killed_experiment_process_leaves_no_trial_process(tmp_path):
    cache, out, log = tmp_path / "cache", tmp_path / "out", tmp_path / "run.log"
    proc = _start(["run", QUICKSTART, *SMALL, "DATALOADER.NUM_WORKERS=2", "SOLVER.MAX_EPOCH=40",
                   f"OUTPUT_DIR={out}", "--no-report"], cache, log)
    try:
        # mid-step: two trial workers, each feeding from its two loader workers
        _wait_for(lambda: len(_descendants(proc.pid)) >= 6, 300, "trial workers and their loader workers",
                  proc, log)
        time.sleep(1.0)
        tree = _descendants(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        time.sleep(2.0)
        assert _alive(tree) == [], f"still running 2 s after the experiment process was killed: {_alive(tree)}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _descendants(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
@pytest.mark.parametrize("presses", ["twice", "mashed"])
def test_a_second_ctrl_c_exits_at_once(tmp_path, presses):
    """`twice`: a second press 0.3 s after the first. `mashed`: Ctrl-C held down, a press every 50 ms
    until the process is gone, so that one lands in every window: the tuner's loop, its shutdown,
    the summary and the interpreter's exit. Each way ends with exit 130 and the resume hint."""
    cache, out, log = tmp_path / "cache", tmp_path / "out", tmp_path / "run.log"
    proc = _start(["run", QUICKSTART, *SMALL, "DATALOADER.NUM_WORKERS=2", "SOLVER.MAX_EPOCH=40",
                   "TUNE.NUM_TRIALS=2", f"OUTPUT_DIR={out}", "--no-report"], cache, log)
    _wait_for(lambda: len(_descendants(proc.pid)) >= 6, 300, "running trials", proc, log)
    tree = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.time()
    if presses == "twice":
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
    else:
        while proc.poll() is None and time.time() - t0 < 30:
            time.sleep(0.05)
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                break
    assert proc.wait(timeout=30) == 130, log.read_text()[-2000:]
    assert time.time() - t0 < 5, log.read_text()[-2000:]
    time.sleep(1.0)
    assert _alive(tree) == []
    assert f"reidplug resume {out / 'quickstart'}" in log.read_text()


def test_a_bad_dataset_folder_stops_a_search_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([REIDPLUG, "run", str(ROOT / "configs" / "tune" / "random.yml"),
                           f"DATASETS.ROOT={tmp_path / 'nowhere'}", f"OUTPUT_DIR={out}", "TUNE.RESOURCES_PER_TRIAL.GPU=0"],
                          env=_env(tmp_path / "cache"), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "DATASETS.ROOT" in lines[0], done.stderr
    assert not out.exists()


@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_search_says_what_it_does_within_two_seconds(tmp_path, command):
    args = ["run", QUICKSTART, f"OUTPUT_DIR={tmp_path}"] if command == "run" else ["resume", str(tmp_path)]
    if command == "resume":  # a folder that looks like an experiment: the first line comes before any check
        (tmp_path / "experiment.db").write_bytes(b"")
        (tmp_path / "experiment.yaml").write_text("{}\n")
    t0 = time.monotonic()
    proc = subprocess.Popen([REIDPLUG, *args], env=_env(tmp_path / "cache"), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert time.monotonic() - t0 < 2.0, line
        assert line.startswith("[reidplug]") and ("starting" in line or "resuming" in line), line
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_trial_can_start_processes_under_each_executor(tmp_path, executor):
    from optional import need

    from reidplug.core.tuner import Tuner

    if executor == "ray":
        need("ray")
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "procs", "TRAINABLE": "process_trainables:StartsProcesses", "EXECUTOR": executor, "NUM_TRIALS": 2,
        "MAX_CONCURRENT": 2, "MAX_STEPS": 2, "SEED": 0, "SPACE": {"x": {"uniform": [0.0, 1.0]}},
        "REPORTERS": ["csv"]}}
    if executor == "ray":
        cfg["TUNE"]["RAY"] = {"ADDRESS": "local", "NUM_CPUS": 2}
    summary = Tuner(cfg).run()
    assert summary["status"].get("ERROR", 0) == 0, summary
    rows = _results(tmp_path / "procs")
    assert len(rows) == 2 and all(float(r[3]) > 0 for r in rows), rows


def _loader_start_method(_):
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import TINY_REID

    from reidplug.core.config import load_config
    from reidplug.reid.data.build import build_train_loader

    cfg = load_config({}, [*TINY_REID, "DATALOADER.NUM_WORKERS=2"])
    return build_train_loader(cfg, seed=0).multiprocessing_context.get_start_method()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is the Linux default")
def test_loader_workers_of_a_spawned_trial_worker_are_forked():
    """A spawned worker would otherwise spawn each loader worker: a new interpreter importing torch."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_loader_start_method, [0]) == ["fork"]
