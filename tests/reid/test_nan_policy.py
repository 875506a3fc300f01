"""SOLVER.NAN_POLICY leaves a usable model: a skipped step restores the batch-norm statistics, and
a diverged model's evaluation is one clear error, not a crash deep in the ranking."""

from __future__ import annotations

import pytest
import torch

from reidplug.core.config import load_config
from reidplug.core.errors import UserError
from reidplug.reid.engine.trainers import AMPTrainer, FP32Trainer, TrainingDiverged
from reidplug.reid.evaluation.evaluator import NonFiniteFeatures, evaluate


class TinyBN(torch.nn.Module):
    """Batch norm before a classifier, with the Baseline's losses() protocol; can be fed NaN."""

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(4)
        self.lin = torch.nn.Linear(4, 3)
        self.nan_input = False

    def forward(self, images, targets=None):
        x = images.flatten(1)[:, :4]
        if self.nan_input:
            x = x * float("nan")
        return {"logits": self.lin(self.bn(x))}

    def losses(self, outputs, targets):
        return {"loss_cls": torch.nn.functional.cross_entropy(outputs["logits"].float(), targets)}


def batch():
    g = torch.Generator().manual_seed(0)
    return {"images": torch.rand(8, 1, 2, 2, generator=g) * 255, "targets": torch.arange(8) % 3}


@pytest.mark.parametrize("cls", [FP32Trainer, AMPTrainer])
def test_a_skipped_step_leaves_the_batch_norm_statistics_as_they_were(cls):
    cfg = load_config({"SOLVER": {"NAN_POLICY": "skip", "MAX_CONSECUTIVE_NAN": 2}})
    model = TinyBN()
    trainer = cls(model, torch.optim.SGD(model.parameters(), lr=0.1), cfg, torch.device("cpu"))
    trainer.run_step(batch())
    before = {k: v.clone() for k, v in model.bn.state_dict().items()}
    model.nan_input = True
    assert trainer.run_step(batch())["skipped"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in model.bn.state_dict().items())  # mean, var, count
    with pytest.raises(TrainingDiverged):
        trainer.run_step(batch())  # the second in a row aborts, and still leaves the statistics alone
    assert all(torch.equal(before[k], v) for k, v in model.bn.state_dict().items())
    assert trainer.nonfinite_state() is None
    model.nan_input = False
    model.eval()
    assert torch.isfinite(model(batch()["images"])["logits"]).all()
    model.train()
    trainer.run_step(batch())  # a finite step after them moves the statistics again
    assert not torch.equal(before["running_mean"], model.bn.running_mean)


def test_a_non_finite_evaluation_is_one_line():
    feats = torch.randn(10, 4)
    feats[2, 1] = float("nan")
    feats[7] = float("inf")
    pids, cams = torch.arange(10) % 3, torch.arange(10) % 2
    with pytest.raises(NonFiniteFeatures) as info:
        evaluate(feats, pids, cams, num_query=4)
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    assert str(info.value).startswith("evaluation: 2 of 10 features are not finite")
