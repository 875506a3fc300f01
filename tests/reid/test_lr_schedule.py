"""LR schedule: warmup per iteration, multi-step and delayed cosine per epoch."""

from __future__ import annotations

import math

import pytest

from reidplug.core.config import load_config
from reidplug.reid.engine.lr_schedule import LRSchedule


def schedule(**solver):
    return LRSchedule(load_config({"SOLVER": solver}).SOLVER)


def test_linear_warmup_from_factor_to_one():
    s = schedule(BASE_LR=1.0, WARMUP_ITERS=10, WARMUP_FACTOR=0.1, STEPS=[5])
    assert s.lr(1.0, 0, 0) == pytest.approx(0.1)
    assert s.lr(1.0, 5, 0) == pytest.approx(0.1 * 0.5 + 0.5)
    assert s.lr(1.0, 10, 0) == pytest.approx(1.0)
    assert s.lr(1.0, 1000, 0) == pytest.approx(1.0)


def test_constant_warmup():
    s = schedule(WARMUP_ITERS=10, WARMUP_FACTOR=0.25, WARMUP_METHOD="constant")
    assert s.warmup(3) == 0.25 and s.warmup(10) == 1.0


def test_multistep_counts_epochs_as_written():
    s = schedule(BASE_LR=1.0, WARMUP_ITERS=0, STEPS=[40, 90], GAMMA=0.1)
    assert [s.lr(1.0, 0, e) for e in (0, 39, 40, 89, 90, 119)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_with_delay():
    s = schedule(BASE_LR=1.0, WARMUP_ITERS=0, SCHED="CosineAnnealingLR", MAX_EPOCH=60, DELAY_EPOCHS=30,
                 ETA_MIN_LR=0.0, STEPS=[])
    assert s.lr(1.0, 0, 29) == 1.0
    assert s.lr(1.0, 0, 45) == pytest.approx(0.5)
    assert s.lr(1.0, 0, 60) == pytest.approx(0.0, abs=1e-12)
    assert s.lr(1.0, 0, 30 + 10) == pytest.approx((1 + math.cos(math.pi * 10 / 30)) / 2)


def test_groups_keep_their_factors():
    import torch

    s = schedule(BASE_LR=0.01, WARMUP_ITERS=0, STEPS=[1])
    w = torch.nn.Parameter(torch.zeros(1))
    b = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w], "lr_mult": 1.0}, {"params": [b], "lr_mult": 10.0}], lr=0.01)
    s.apply(opt, 0, 0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
    s.apply(opt, 0, 1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.001, 0.01])
