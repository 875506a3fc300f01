"""The training engine end to end on a tiny synthetic set: resume equivalence, NaN policy, plugins."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import TINY_REID, run_cli

from reidplug.core.config import load_config
from reidplug.core.hookspecs import hookimpl
from reidplug.core.manager import plugin_manager
from reidplug.reid.engine.checkpoint import load_file
from reidplug.reid.engine.trainers import FP32Trainer
from reidplug.reid.engine.training import ReIDTraining


def cfg(tmp_path, *extra):
    return load_config(None, [*TINY_REID, f"OUTPUT_DIR={tmp_path}", *extra])


def weights(path):
    return load_file(path)["model"]


@pytest.mark.slow
def test_two_plus_two_epochs_equal_four(tmp_path):
    """2 epochs, a resume from the checkpoint, 2 more: the same weights as 4 epochs in one go (CLI)."""
    straight = tmp_path / "straight"
    split = tmp_path / "split"
    base = ["configs/synthetic/quick.yml", *TINY_REID]
    first = run_cli("train", *base, f"OUTPUT_DIR={straight}")
    assert first.returncode == 0, first.stderr
    half = run_cli("train", *base, f"OUTPUT_DIR={split}", "SOLVER.MAX_EPOCH=2")
    assert half.returncode == 0, half.stderr
    rest = run_cli("train", *base, f"OUTPUT_DIR={split}", "--resume")
    assert rest.returncode == 0, rest.stderr
    assert "resumed from" in rest.stdout and "model_0002.pth" in rest.stdout
    a, b = weights(straight / "model_0004.pth"), weights(split / "model_0004.pth")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    full = load_file(split / "model_0004.pth")
    assert full["epoch"] == 4 and full["iter"] == load_file(straight / "model_0004.pth")["iter"]
    assert {"model", "optimizer", "trainer", "schedule", "rng"} <= set(full)
    rows = [json.loads(line) for line in open(straight / "metrics.jsonl")]
    evals = [r for r in rows if r["type"] == "eval"]
    assert [r["epoch"] for r in evals] == [2, 4] and all(0 <= r["rank1"] <= 100 for r in evals)
    assert (straight / "model_best.pth").exists() and (straight / "last_checkpoint").read_text() == "model_0004.pth"
    assert "| SyntheticMarket |" in first.stdout
    # A finished run leaves model_final.pth, its last checkpoint under FastReID's name, and says so last;
    # the resumed run's replaces the one its first half left.
    for folder, run in ((straight, first), (split, rest)):
        assert os.path.samefile(folder / "model_final.pth", folder / "model_0004.pth")
        assert f"weights: {folder / 'model_final.pth'}" in run.stdout.splitlines()[-2]
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary files left"


class PoisonOnce(FP32Trainer):
    """A third-party trainer: the loss of iteration 3 is NaN."""

    def forward(self, images, targets):
        losses = super().forward(images, targets)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses


class PoisonPlugin:
    @hookimpl
    def register_trainers(self, register):
        register("poison-once", PoisonOnce)


def test_third_party_trainer_by_name_and_nan_skip(tmp_path):
    plugin_manager().register(PoisonPlugin(), name="poison")
    training = ReIDTraining(cfg(tmp_path, "SOLVER.TRAINER=poison-once", "SOLVER.MAX_EPOCH=1"), tmp_path, echo=False)
    assert isinstance(training.trainer, PoisonOnce)
    training.train()
    assert training.trainer.nan_steps == 1
    # the skipped step did not count towards the warmup
    assert training.warmup_iter == training.loop.iter - 1
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[-1]["skipped_steps"] == 1


def test_nan_abort_policy_stops_training(tmp_path):
    from reidplug.reid.engine.trainers import TrainingDiverged

    plugin_manager().register(PoisonPlugin(), name="poison")
    training = ReIDTraining(cfg(tmp_path, "SOLVER.TRAINER=poison-once", "SOLVER.NAN_POLICY=abort"), tmp_path,
                            echo=False)
    with pytest.raises(TrainingDiverged, match="non-finite loss at iteration 2"):
        training.train()


def test_amp_trainer_trains_in_bf16_on_cpu(tmp_path):
    training = ReIDTraining(cfg(tmp_path, "SOLVER.AMP.ENABLED=true", "SOLVER.MAX_EPOCH=1"), tmp_path, echo=False)
    dtypes = []
    handle = training.model.backbone.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    training.train()
    handle.remove()
    assert type(training.trainer).__name__ == "AMPTrainer" and set(dtypes) == {torch.bfloat16}


def test_exploit_style_load_applies_new_hyperparameters(tmp_path):
    donor = ReIDTraining(cfg(tmp_path / "a", "SOLVER.MAX_EPOCH=4"), tmp_path / "a", echo=False)
    donor.run_epochs(1)
    state = donor.state_dict()
    recipient = ReIDTraining(cfg(tmp_path / "b", "SOLVER.BASE_LR=0.0005", "SOLVER.WEIGHT_DECAY=0.01"),
                             tmp_path / "b", echo=False)
    recipient.load_state_dict(state)
    for key, value in donor.model.state_dict().items():
        assert torch.equal(value, recipient.model.state_dict()[key])
    assert recipient.epoch == 1 and recipient.warmup_iter == donor.warmup_iter
    groups = {g["wd_kind"]: g for g in recipient.optimizer.param_groups}
    assert groups["weight"]["weight_decay"] == 0.01
    assert groups["weight"]["lr"] == pytest.approx(recipient.schedule.lr(0.0005, recipient.warmup_iter, 1))
