"""Searches whose trials train data-parallel: 2 gloo processes per trial under the local and Ray executors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import TINY_REID
from optional import need

from reidplug.core.config import load_config
from reidplug.core.tuner import Tuner
from reidplug.plugins.executors.local import gpu_assignment
from reidplug.reid.trainable import trial_processes

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_search_whose_trial_trains_with_two_gloo_processes(tmp_path, executor):
    if executor == "ray":
        need("ray")  # the trial's actor sits in a placement group holding both processes' CPUs
    cfg = load_config(str(ROOT / "configs/quickstart.yml"), [
        *TINY_REID, "SOLVER.MAX_EPOCH=1", "SOLVER.AMP.ENABLED=true", f"OUTPUT_DIR={tmp_path}",
        f"TUNE.EXECUTOR={executor}",
        "TUNE.NAME=ddp", "TUNE.NUM_TRIALS=1", "TUNE.MAX_CONCURRENT=1", "TUNE.STEP_EPOCHS=1",
        "TUNE.SCHEDULER=fifo", "TUNE.REPORTERS=[csv]", "TUNE.RESOURCES_PER_TRIAL.CPU=2",
        "TUNE.RESOURCES_PER_TRIAL.CPU_PROCESSES=2", "TUNE.SPACE={SOLVER.BASE_LR: {choice: [0.001]}}",
    ])
    summary = Tuner(cfg).run()
    assert summary["status"] == {"TERMINATED": 1}, summary
    (trial,) = (tmp_path / "ddp").glob("trial_*")
    log = (trial / "log.txt").read_text()
    # rank 0 alone prints its table; AMP (bf16 on the CPU) ran under DDP
    assert log.count("| SyntheticMarket |") == 1, log[-2000:]
    with open(tmp_path / "ddp" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and 0 <= float(rows[0]["score"]) <= 100
    assert (trial / "checkpoints").is_dir()  # the trained model, saved from rank 0


def test_processes_per_trial_and_the_gpus_each_slot_sees():
    base = [*TINY_REID, "TUNE.RESOURCES_PER_TRIAL.CPU=2"]
    assert trial_processes(load_config({}, base), "cpu") == 1
    assert trial_processes(load_config({}, [*base, "TUNE.RESOURCES_PER_TRIAL.CPU_PROCESSES=3"]), "cpu") == 3
    assert trial_processes(load_config({}, [*base, "TUNE.RESOURCES_PER_TRIAL.GPU=2"]), "cuda") == 2
    assert trial_processes(load_config({}, [*base, "TUNE.RESOURCES_PER_TRIAL.GPU=0.5"]), "cuda") == 1
    # 4 GPUs: 2 per trial gives slots 0,1 and 2,3; a half gives two trials per card (AMP trials sharing it)
    assert [gpu_assignment(i, 2, 4) for i in range(2)] == ["0,1", "2,3"]
    assert [gpu_assignment(i, 0.5, 4) for i in range(4)] == ["0", "0", "1", "1"]
