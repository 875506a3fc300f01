"""The training loop and its hooks."""

from __future__ import annotations

import time
from typing import Iterable


class HookBase:
    """Something that runs at fixed points of the loop; `self.loop` is set when registered."""

    loop: TrainLoop

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_backward(self) -> None:
        """Gradients exist and (under AMP) are unscaled; the optimizer has not stepped."""

    def after_step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class TrainLoop:
    """Epochs of steps with hooks around them. The step itself belongs to a trainer plugin.

        hooks.before_train()
        for epoch in range(epoch, max_epoch):
            hooks.before_epoch()
            for batch in batches(epoch):              # a deterministic pass for this epoch
                hooks.before_step()
                out = trainer.run_step(batch, after_backward=hooks.after_backward)
                hooks.after_step()                    # sees self.step_output
            hooks.after_epoch()
        hooks.after_train()

    `iter` counts every step taken (skipped ones too); `epoch` is the epoch running,
    and equals the number of finished epochs between epochs.
    """

    def __init__(self, trainer, batches, hooks: Iterable[HookBase] = ()):
        self.trainer = trainer
        self.batches = batches  # callable: epoch -> iterable of batches
        self.hooks: list[HookBase] = []
        self.epoch = 0
        self.iter = 0
        self.max_epoch = 0
        self.step_output: dict = {}
        self.epoch_started = 0.0
        self.register(hooks)

    def register(self, hooks: Iterable[HookBase]) -> None:
        for hook in hooks:
            hook.loop = self
            self.hooks.append(hook)

    def _call(self, name: str) -> None:
        for hook in self.hooks:
            getattr(hook, name)()

    def train(self, max_epoch: int) -> None:
        """Run from the current epoch to `max_epoch`."""
        self.max_epoch = max_epoch
        self._call("before_train")
        try:
            while self.epoch < max_epoch:
                self.epoch_started = time.perf_counter()
                self._call("before_epoch")
                for batch in self.batches(self.epoch):
                    self._call("before_step")
                    self.step_output = self.trainer.run_step(batch, after_backward=self._after_backward, iteration=self.iter)
                    self.iter += 1
                    self._call("after_step")
                self.epoch += 1
                self._call("after_epoch")
        finally:
            self._call("after_train")

    def _after_backward(self) -> None:
        self._call("after_backward")
