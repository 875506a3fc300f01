"""Trainers: NaN policies, bf16 autocast on the CPU, overflow bookkeeping."""

from __future__ import annotations

import pytest
import torch

from reidplug.core.config import load_config
from reidplug.reid.engine.trainers import AMPTrainer, FP32Trainer, TrainingDiverged


class Tiny(torch.nn.Module):
    """A model with the Baseline's losses() protocol; can be told to produce NaN."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)
        self.poison = False
        self.seen_dtypes: list = []

    def forward(self, images, targets=None):
        out = self.lin(images.flatten(1)[:, :4])
        self.seen_dtypes.append(out.dtype)
        return {"logits": out}

    def losses(self, outputs, targets):
        loss = torch.nn.functional.cross_entropy(outputs["logits"].float(), targets)
        if self.poison:
            loss = loss * float("nan")
        return {"loss_cls": loss}


def batch():
    g = torch.Generator().manual_seed(0)
    return {"images": torch.rand(8, 1, 2, 2, generator=g) * 255, "targets": torch.arange(8) % 3}


def make(cls, **solver):
    cfg = load_config({"SOLVER": solver})
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return cls(model, opt, cfg, torch.device("cpu")), model


def test_fp32_step_updates_weights():
    trainer, model = make(FP32Trainer)
    before = model.lin.weight.clone()
    out = trainer.run_step(batch())
    assert out["skipped"] == 0.0 and out["loss_cls"] > 0 and "total_loss" in out
    assert not torch.equal(before, model.lin.weight)
    assert model.seen_dtypes[-1] == torch.float32


def test_amp_uses_bf16_autocast_on_cpu():
    trainer, model = make(AMPTrainer)
    assert trainer.scaler is None and trainer.dtype == torch.bfloat16
    out = trainer.run_step(batch())
    assert model.seen_dtypes[-1] == torch.bfloat16
    assert out["skipped"] == 0.0


def test_nan_skip_policy_skips_and_counts_then_aborts():
    trainer, model = make(FP32Trainer, NAN_POLICY="skip", MAX_CONSECUTIVE_NAN=3)
    before = model.lin.weight.clone()
    model.poison = True
    assert trainer.run_step(batch(), iteration=7)["skipped"] == 1.0
    assert trainer.run_step(batch(), iteration=8)["skipped"] == 1.0
    assert torch.equal(before, model.lin.weight) and trainer.nan_steps == 2
    model.poison = False
    trainer.run_step(batch())
    assert trainer.consecutive_nan == 0 and trainer.nan_steps == 2
    model.poison = True
    trainer.run_step(batch())
    trainer.run_step(batch())
    with pytest.raises(TrainingDiverged, match="3 consecutive non-finite losses up to iteration 12"):
        trainer.run_step(batch(), iteration=12)


def test_nan_abort_policy_names_iteration_and_terms():
    trainer, model = make(FP32Trainer, NAN_POLICY="abort")
    model.poison = True
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at iteration 5 \(loss_cls=nan\)"):
        trainer.run_step(batch(), iteration=5)


def test_state_dict_round_trip():
    trainer, model = make(AMPTrainer)
    trainer.nan_steps, trainer.overflow_steps = 4, 2
    other, _ = make(AMPTrainer)
    other.load_state_dict(trainer.state_dict())
    assert (other.nan_steps, other.overflow_steps) == (4, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_amp_scaler_on_cuda_counts_overflow():
    cfg = load_config({})
    model = Tiny().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = AMPTrainer(model, opt, cfg, torch.device("cuda"))
    assert trainer.scaler is not None and trainer.scaler.get_scale() == 2.0**16
    with torch.no_grad():
        model.lin.weight.fill_(6e4)  # fp16 overflow in the forward pass -> inf gradients
    out = trainer.run_step({k: v.cuda() for k, v in batch().items()})
    assert out["overflow"] == 1.0 or out["skipped"] == 1.0
