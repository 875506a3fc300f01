"""The hooks the Re-ID training loop runs with."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from reidplug.reid.engine.train_loop import HookBase


class LRScheduleHook(HookBase):
    """Sets every group's rate before each step; counts the steps that updated the weights."""

    def __init__(self, training):
        self.training = training

    def before_step(self):
        t = self.training
        t.schedule.apply(t.optimizer, t.warmup_iter, self.loop.epoch)

    def after_step(self):
        if not self.loop.step_output.get("skipped"):
            self.training.warmup_iter += 1


class FreezeHook(HookBase):
    """MODEL.FREEZE_LAYERS stay frozen for the first SOLVER.FREEZE_ITERS iterations."""

    def __init__(self, model, layers, iters: int):
        self.model, self.layers, self.iters = model, list(layers), iters

    def before_train(self):
        if self.layers and self.iters > 0 and self.loop.iter < self.iters:
            self.model.freeze(self.layers)

    def after_step(self):
        if self.loop.iter == self.iters and self.model.frozen:
            self.model.unfreeze()

    def after_train(self):
        if self.model.frozen:
            self.model.unfreeze()


class ProgressHook(HookBase):
    """Training progress: a metrics.jsonl row every `period_s` seconds and at each epoch's end, and
    on the console either a live bar (a terminal) or the same rows as plain lines (a log, a pipe, CI).

    The bar shows the epoch, its iterations, the loss and images/s of the epoch so far, and the ETA
    of the run; each finished epoch leaves its line above it.
    """

    def __init__(self, training, metrics_path: Path | None, period_s: float = 10.0, echo: bool = True):
        self.training = training
        self.metrics_path = metrics_path
        self.period_s = period_s
        self.echo = echo
        self._sums: dict[str, float] = {}
        self._count = 0
        self._images = 0
        self._last = 0.0
        self.last_row: dict = {}
        self._bar = None

    def before_train(self):
        self._last = time.perf_counter()
        self._start_iter = self.loop.iter
        self._start_time = self._last
        if self.echo and on_terminal():
            from reidplug.core import progress

            # Transient: the epoch lines printed above it are the record; the bar only shows the present.
            self._bar = progress.bar("", self.training.iters_per_epoch, unit="it", timer=False, transient=True,
                                     force_mode="rich")
            self._bar.open()
            if self._bar.mode != "rich":  # another live display owns the terminal
                self._bar.close(ok=False)
                self._bar = None

    def before_epoch(self):
        self._epoch_loss, self._epoch_steps, self._epoch_start = 0.0, 0, time.perf_counter()
        if self._bar is not None:
            eta = self._eta_s(time.perf_counter())
            self._bar.update(0, description=f"epoch {self.loop.epoch + 1}/{self.loop.max_epoch}",
                             info=f"eta {_hms(eta)}" if eta is not None else "")

    def after_step(self):
        out = self.loop.step_output
        for k, v in out.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        self._images += self.training.batch_size
        now = time.perf_counter()
        if self._bar is not None:
            self._epoch_steps += 1
            self._epoch_loss += out.get("total_loss", float("nan"))
            rate = self._epoch_steps * self.training.batch_size / max(now - self._epoch_start, 1e-9)
            self._bar.update(self._epoch_steps, info=f"loss {self._epoch_loss / self._epoch_steps:.4f}  "
                                                     f"{rate:.1f} img/s  eta {self._eta_text(now)}")
        if now - self._last >= self.period_s:
            self.flush(now)

    def after_epoch(self):
        now = time.perf_counter()
        if self._count:
            self.flush(now, epoch_done=True)
        elif self.echo and self._bar is not None and self.last_row:
            # The periodic row came with the epoch's last step, and the bar showed it instead of a line.
            self._print({**self.last_row, "eta_s": self._eta_s(now)}, epoch_done=True)

    def after_train(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def show(self, text: str) -> None:
        """What the run does between steps (evaluating), in the bar; plain output has its own lines."""
        if self._bar is not None:
            self._bar.update(self._bar.done, info=text)

    def _eta_s(self, now: float) -> float | None:
        loop = self.loop
        per_epoch = max(self.training.iters_per_epoch, 1)
        remaining = per_epoch * max(loop.max_epoch - loop.epoch, 0) - loop.iter % per_epoch
        rate = (loop.iter - self._start_iter) / max(now - self._start_time, 1e-9)
        return remaining / rate if rate > 0 else None

    def _eta_text(self, now: float) -> str:
        eta = self._eta_s(now)
        return _hms(eta) if eta is not None else "?"

    def flush(self, now: float, epoch_done: bool = False) -> None:
        if not self._count:
            return
        loop = self.loop
        elapsed = max(now - self._last, 1e-9)
        row = {k: v / self._count for k, v in self._sums.items() if k not in ("skipped", "overflow")}
        row.update({
            "iter": loop.iter, "epoch": loop.epoch, "lr": self.training.optimizer.param_groups[0]["lr"],
            "images_per_s": self._images / elapsed, "iter_per_s": self._count / elapsed,
            "skipped_steps": self.training.trainer.nan_steps, "overflow_steps": self.training.trainer.overflow_steps,
        })
        row["eta_s"] = self._eta_s(now)
        self.last_row = row
        if self.metrics_path is not None:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps({"type": "train", "time": round(time.time(), 3), **row}) + "\n")
        # With a bar, only finished epochs get a line: the bar shows the rest.
        if self.echo and (self._bar is None or epoch_done):
            self._print(row, epoch_done)
        self._sums, self._count, self._images, self._last = {}, 0, 0, now

    def _print(self, row: dict, epoch_done: bool) -> None:
        loop = self.loop
        eta = _hms(row["eta_s"]) if row["eta_s"] is not None else "?"
        print(
            f"epoch {loop.epoch if epoch_done else loop.epoch + 1}/{loop.max_epoch} iter {loop.iter} "
            f"loss {row.get('total_loss', float('nan')):.4f} "
            f"lr {row['lr']:.2e} {row['images_per_s']:.1f} img/s eta {eta}"
            + (f" skipped {row['skipped_steps']}" if row["skipped_steps"] else "")
            + (f" amp-overflow {row['overflow_steps']}" if row["overflow_steps"] else ""),
            flush=True,
        )


def on_terminal() -> bool:
    """Whether both stdout and stderr are an interactive terminal (not a log, a pipe or CI).

    Trials write into their log.txt through redirected streams, so they always get plain lines.
    """
    from reidplug.core import progress

    return progress.mode(sys.stdout) == "rich" and progress.mode(sys.stderr) == "rich"


class EvalHook(HookBase):
    """Evaluate every TEST.EVAL_PERIOD epochs and after the last one."""

    def __init__(self, training, period: int):
        self.training, self.period = training, period

    def after_epoch(self):
        epoch = self.loop.epoch
        if epoch % self.period == 0 or epoch == self.loop.max_epoch:
            self.training.evaluate(record=True)


class CheckpointHook(HookBase):
    """Save every SOLVER.CHECKPOINT_PERIOD epochs and at the end (also as model_final.pth);
    keep the last N and the best. In a data-parallel run only rank 0 writes."""

    def __init__(self, training, period: int):
        self.training, self.period = training, period

    def after_epoch(self):
        epoch = self.loop.epoch
        if epoch % self.period == 0 or epoch == self.loop.max_epoch:
            self.training.save_checkpoint(f"model_{epoch:04d}")  # every rank takes part; rank 0 writes
        if epoch == self.loop.max_epoch and self.training.checkpointer is not None:
            self.training.checkpointer.finalize()


class PreciseBNHook(HookBase):
    """Recompute BatchNorm statistics over TEST.PRECISE_BN.NUM_ITER batches before each evaluation."""

    def __init__(self, training, num_iter: int, period: int):
        self.training, self.num_iter, self.period = training, num_iter, period

    def after_epoch(self):
        epoch = self.loop.epoch
        if epoch % self.period == 0 or epoch == self.loop.max_epoch:
            precise_bn(self.training.model, self.training.batches(epoch + 10_000), self.num_iter,
                       self.training.device)


@torch.no_grad()
def precise_bn(model: torch.nn.Module, batches, num_iter: int, device) -> None:
    """Replace running BN statistics by their average over `num_iter` training batches."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    if not bns:
        return
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    was = model.training
    model.train()
    try:
        for i, batch in enumerate(batches):
            if i >= num_iter:
                break
            model(batch["images"].to(device))
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.train(was)


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
