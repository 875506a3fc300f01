"""Learning-rate schedules: per-iteration warmup, then per-epoch multi-step or cosine decay.

The rate is a pure function of two counters, so a resumed run continues exactly:

    lr = base_lr(group) × warmup(warmup_iter) × decay(epoch)

Milestones (SOLVER.STEPS) and the cosine delay count epochs from the start of
training, as written in the config. FastReID instead starts its epoch scheduler
only once warmup ends, which moves its milestones later by the warmup's length in
epochs (about 10 epochs on Market-1501 with 2,000 warmup iterations).
`warmup_iter` only advances on steps that updated the weights, so steps skipped
for a non-finite loss or an AMP overflow do not eat into the warmup.
"""

from __future__ import annotations

import bisect
import math


class LRSchedule:
    """The SOLVER.* schedule applied to an optimizer's parameter groups."""

    def __init__(self, solver, max_epoch: int | None = None, iters_per_epoch: int = 0):
        self.solver = solver
        self.max_epoch = max_epoch or solver.MAX_EPOCH
        epochs = getattr(solver, "WARMUP_EPOCHS", 0)
        self.warmup_iters = epochs * iters_per_epoch if epochs > 0 and iters_per_epoch > 0 else solver.WARMUP_ITERS

    def warmup(self, warmup_iter: int) -> float:
        s = self.solver
        if warmup_iter >= self.warmup_iters:
            return 1.0
        if s.WARMUP_METHOD == "constant":
            return s.WARMUP_FACTOR
        alpha = warmup_iter / self.warmup_iters
        return s.WARMUP_FACTOR * (1 - alpha) + alpha

    def decay(self, epoch: int, base_lr: float) -> float:
        s = self.solver
        if s.SCHED == "MultiStepLR":
            return s.GAMMA ** bisect.bisect_right(s.STEPS, epoch)
        if epoch < s.DELAY_EPOCHS:
            return 1.0
        span = max(self.max_epoch - s.DELAY_EPOCHS, 1)
        t = min((epoch - s.DELAY_EPOCHS) / span, 1.0)
        floor = min(s.ETA_MIN_LR / base_lr, 1.0) if base_lr > 0 else 0.0
        return floor + (1 - floor) * (1 + math.cos(math.pi * t)) / 2

    def lr(self, base_lr: float, warmup_iter: int, epoch: int) -> float:
        return base_lr * self.warmup(warmup_iter) * self.decay(epoch, base_lr)

    def apply(self, optimizer, warmup_iter: int, epoch: int) -> None:
        base = self.solver.BASE_LR
        for group in optimizer.param_groups:
            group["lr"] = self.lr(base * group.get("lr_mult", 1.0), warmup_iter, epoch)
