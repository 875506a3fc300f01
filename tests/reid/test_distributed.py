"""Data-parallel training (gloo CPU processes): one model over 2 ranks equals one process with the global batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_REID, run_cli

from reidplug.core.config import load_config
from reidplug.core.errors import ConfigError
from reidplug.reid.data.build import EpochBatchSampler
from reidplug.reid.data.samplers import BalancedIdentitySampler, NaiveIdentitySampler
from reidplug.reid.engine.checkpoint import load_file
from reidplug.reid.engine.launch import LaunchPlan, RankFailed, RankGroup
from reidplug.reid.engine.train_loop import HookBase
from reidplug.reid.engine.training import ReIDTraining

ROOT = Path(__file__).resolve().parents[2]
# SGD rather than Adam for the comparison: Adam divides by the gradient's running magnitude, so a
# parameter whose gradient is ~0 moves by ~lr whatever the sign of a rounding difference.
EQUIVALENCE = [*TINY_REID, "SOLVER.MAX_EPOCH=2", "SOLVER.CHECKPOINT_PERIOD=1", "TEST.EVAL_PERIOD=1",
               "SOLVER.OPT=SGD", "SOLVER.BASE_LR=0.05", "MODEL.BACKBONE.NORM=syncBN", "MODEL.HEADS.NORM=syncBN"]


# ---------------------------------------------------------------- sampling


def _pids(num_ids=10, per_id=(3, 9)):
    pids = []
    for pid in range(num_ids):
        pids += [pid] * (per_id[0] + pid % (per_id[1] - per_id[0] + 1))
    return pids


@pytest.mark.parametrize("kind", ["naive", "balanced"])
def test_ranks_get_disjoint_identities_that_make_up_the_global_batch(kind):
    pids = _pids()
    cams = [i % 3 for i in range(len(pids))]

    def sampler():
        if kind == "naive":
            return NaiveIdentitySampler(pids, 16, 4, seed=7)
        return BalancedIdentitySampler(pids, cams, 16, 4, seed=7)

    single = EpochBatchSampler(sampler(), 16, seed=7)
    ranks = [EpochBatchSampler(sampler(), 16, seed=7, rank=r, world_size=2) for r in range(2)]
    for epoch in range(4):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        batches = list(single)
        shares = [list(r) for r in ranks]
        assert len(shares[0]) == len(shares[1]) == len(batches)
        for whole, a, b in zip(batches, *shares):
            ids_a, ids_b = {pids[i] for i, _ in a}, {pids[i] for i, _ in b}
            assert len(a) == len(b) == 8 and len(ids_a) == len(ids_b) == 2
            assert not ids_a & ids_b, f"epoch {epoch}: an identity on both ranks"
            assert a + b == whole  # the same images and augmentation seeds as one process
        # deterministic per epoch: asked again, the same shares
        for r, share in zip(ranks, shares):
            r.set_epoch(epoch)
            assert list(r) == share


def test_a_share_that_would_split_an_identity_is_refused():
    with pytest.raises(ConfigError, match="SOLVER.IMS_PER_BATCH: 24 over 4 processes leaves 6 images per process"):
        EpochBatchSampler(NaiveIdentitySampler(_pids(), 24, 4, seed=0), 24, seed=0, rank=0, world_size=4)
    with pytest.raises(ConfigError, match="SOLVER.IMS_PER_BATCH: 16 does not split evenly over 3 processes"):
        EpochBatchSampler(NaiveIdentitySampler(_pids(), 16, 4, seed=0), 16, seed=0, rank=0, world_size=3)


# ---------------------------------------------------------------- training, inside the ranks


class _Losses(HookBase):
    def __init__(self):
        self.values = []

    def after_step(self):
        self.values.append(self.loop.step_output["total_loss"])


def _float64_models():
    import reidplug.reid.engine.training as training_module

    build = training_module.build_reid_model
    if getattr(build, "float64", False):
        return

    def double(*args, **kwargs):
        return build(*args, **kwargs).double()

    double.float64 = True
    training_module.build_reid_model = double


def _train(overrides, out, resume_from=None):
    """One run of 2 epochs (or the rest of one, from a checkpoint): its losses, evaluations and weights."""
    _float64_models()
    cfg = load_config(None, [*overrides, f"OUTPUT_DIR={out}"])
    training = ReIDTraining(cfg, out, checkpoints=True, echo=False)
    if resume_from:
        training.load_state_dict(load_file(resume_from))
    losses = _Losses()
    training.loop.register([losses])
    training.train()
    return losses.values, training.eval_history, {k: v.clone() for k, v in training.model.state_dict().items()}


def _rank_runs(state, overrides, out):
    first = _train(overrides, out)
    resumed = _train(overrides, f"{out}-resumed", resume_from=f"{out}/model_0001.pth")
    return first, resumed


@pytest.mark.slow
def test_two_gloo_ranks_train_as_one_process_with_the_global_batch(tmp_path, monkeypatch):
    """2 ranks x 8 images = 1 process x 16: the same losses and weights, within float rounding.

    Both runs see the same images with the same augmentations (each rank takes its half of
    the same global batch), syncBN normalises each rank with the global batch's statistics,
    and the losses are those of the gathered global batch. What differs is the order of
    float sums (the gradient is the average of two half-batch sums; convolutions over 8
    images may take other kernels than over 16).

    The models run in float64. In float32 those reorderings move activations by ~1e-6, and
    a ReLU input that close to 0 changes sides: its gradient goes from g to 0, which in this
    tiny net (2x1 maps in layer4) is a few percent of a channel's gradient, and SGD carries
    it on. In float64 that takes an input within ~1e-14 of 0, so what is left is the
    losses' own float32 arithmetic: 1e-6 relative on losses, 1e-6 + 1e-5 relative on weights.
    Without syncBN each rank's batch norms see 8 images and the runs differ by far more.
    """
    monkeypatch.setattr("reidplug.reid.engine.training.build_reid_model",
                        __import__("reidplug.reid.engine.training", fromlist=["x"]).build_reid_model)
    out = tmp_path / "ddp"
    with RankGroup(LaunchPlan(processes=2, device_type="cpu", threads=1)) as group:
        replies = group.call(_rank_runs, EQUIVALENCE, str(out))
    (ddp_losses, ddp_evals, ddp_weights), (resumed_losses, _, resumed_weights) = replies[0]
    rank1_weights = replies[1][0][2]

    torch.set_num_threads(1)
    single_losses, _, single_weights = _train(EQUIVALENCE, tmp_path / "single")
    assert len(ddp_losses) == len(single_losses) >= 6
    assert ddp_losses == pytest.approx(single_losses, rel=1e-6)
    for key, value in single_weights.items():
        if value.is_floating_point():
            torch.testing.assert_close(ddp_weights[key], value, rtol=1e-5, atol=1e-6, msg=key)
        torch.testing.assert_close(rank1_weights[key], ddp_weights[key], rtol=0, atol=0, msg=key)

    # Resuming the data-parallel run from its epoch-1 checkpoint gives the uninterrupted run's weights exactly.
    assert resumed_losses == ddp_losses[len(ddp_losses) - len(resumed_losses):]
    for key, value in ddp_weights.items():
        assert torch.equal(resumed_weights[key], value), key

    # Rank 0 alone wrote files; the gathered evaluation equals one process evaluating the same weights.
    assert sorted(p.name for p in out.iterdir()) == ["last_checkpoint", "metrics.jsonl", "model_0001.pth",
                                                     "model_0002.pth", "model_best.pth", "model_final.pth"]
    cfg = load_config(None, [*EQUIVALENCE, f"OUTPUT_DIR={tmp_path / 'eval'}"])
    check = ReIDTraining(cfg, tmp_path / "eval", echo=False)
    check.model.load_state_dict(load_file(out / "model_0002.pth")["model"])
    alone = check.evaluate(record=False)
    for key in ("rank1", "rank5", "mAP", "mINP", "score"):
        assert ddp_evals[-1][key] == pytest.approx(alone[key], abs=1e-6), key
    evals = [json.loads(line) for line in open(out / "metrics.jsonl") if '"eval"' in line]
    assert [e["epoch"] for e in evals] == [1, 2]


def _fail_on_rank_1(state):
    from reidplug.reid.engine import distributed as D

    if D.rank() == 1:
        raise ConfigError("not usable", key="SOLVER.BASE_LR")
    D.barrier()  # rank 0 waits for a peer that never comes: the launcher must not wait with it


def test_a_rank_error_is_one_line_and_stops_the_others():
    start = time.monotonic()
    with pytest.raises(RankFailed, match=r"^SOLVER.BASE_LR: not usable$"):
        with RankGroup(LaunchPlan(processes=2, device_type="cpu", threads=1)) as group:
            group.call(_fail_on_rank_1)
    assert time.monotonic() - start < 60
    assert all(not p.is_alive() for p in group.procs)


# ---------------------------------------------------------------- the command line


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the ranks through /proc")
def test_killing_a_rank_ends_the_run_within_seconds(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reidplug", "train", "configs/synthetic/quick.yml", "--num-gpus", "2", *TINY_REID,
         "SOLVER.MAX_EPOCH=200", "TEST.EVAL_PERIOD=100", f"OUTPUT_DIR={out}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        # Training is under way once rank 0 has written an epoch's row.
        while not (out / "metrics.jsonl").is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        ranks = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
        assert len(ranks) == 2, (ranks, proc.poll())
        os.kill(max(ranks), signal.SIGKILL)  # the later-started rank: rank 1
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < 10, f"the run took {took:.1f}s to end"
    assert proc.returncode == 1
    assert stderr.strip().splitlines()[-1] == "error: rank 1 was killed by SIGKILL; stopped the other 1 rank of this machine"
    for pid in ranks:
        assert not Path(f"/proc/{pid}").exists() or "spawn_main" not in _cmdline(pid)


@pytest.mark.slow
def test_train_quick_config_with_two_cpu_processes(tmp_path):
    """The issue's command, shrunk in size only."""
    out = tmp_path / "quick"
    run = run_cli("train", "configs/synthetic/quick.yml", "--num-gpus", "2", "MODEL.DEVICE=cpu", *TINY_REID,
                  "SOLVER.MAX_EPOCH=1", "DATALOADER.NUM_WORKERS=1", f"OUTPUT_DIR={out}", cwd=ROOT, timeout=180)
    assert run.returncode == 0, run.stderr
    assert "starting 2 training processes (2 in all, gloo on the CPU)" in run.stdout
    assert run.stdout.count("| SyntheticMarket |") == 1  # rank 0 alone prints
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert {r["type"] for r in rows} == {"train", "eval"} and rows[-1]["epoch"] == 1
