"""Trainers: how one optimisation step is done (the `register_trainers` plugins fp32 and amp)."""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch

from reidplug.core.errors import UserError
from reidplug.reid.engine.distributed import gather_batch, gather_outputs, world_size


class TrainingDiverged(UserError):
    """The loss stayed non-finite (SOLVER.NAN_POLICY)."""


class Trainer:
    """One optimisation step of a Re-ID model; subclasses decide precision.

        losses = model.losses(model(images), targets)      # a dict of scalar tensors
        if the total is not finite: skip (or abort) per SOLVER.NAN_POLICY
        optimizer.zero_grad(); total.backward(); after_backward(); optimizer.step()

    A skipped step leaves the model as it was before the step: the forward pass of a
    training step already moved the batch-norm running statistics (with NaN or inf, when
    the activations were), so they are copied before it and put back on a skip.

    `run_step` returns floats: each loss term, `total_loss`, `skipped` (1.0 when no
    update was made) and `overflow` (1.0 when the AMP scaler skipped the update).
    A third-party trainer subclasses this, overrides `forward`, `update` or `run_step`, and
    registers itself with `register_trainers`; SOLVER.TRAINER selects it by name.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg, device: torch.device):
        self.model = model
        # What the forward pass runs through: the model, or its DistributedDataParallel wrapper
        # (set by the training run), whose backward averages the gradients over the ranks.
        self.forward_model: torch.nn.Module = model
        self.optimizer = optimizer
        self.cfg = cfg
        self.device = device
        self.nan_steps = 0  # total steps skipped for a non-finite loss
        self.consecutive_nan = 0
        self.overflow_steps = 0
        self.channels_last = device.type == "cuda"
        self._bn_modules: list[torch.nn.Module] | None = None  # found once; their buffers read each step
        self._bn_copy: list[torch.Tensor] = []

    # -- pieces
    def to_device(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch["images"].to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, batch["targets"].to(self.device, non_blocking=True)

    def autocast(self):
        return contextlib.nullcontext()

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.autocast():
            outputs = self.forward_model(images, targets)
        if world_size() > 1:
            # The losses of the global batch on every rank: hard mining sees every identity of the
            # step (as FastReID's gathered triplet loss), and all ranks agree on skipping a step.
            outputs = gather_outputs(outputs, images.shape[0])
            targets = gather_batch(targets)
        return self.model.losses(outputs, targets)  # computed in fp32 by the losses themselves

    def finite_or_skip(self, losses: dict[str, torch.Tensor], total: torch.Tensor, iteration: int) -> bool:
        """True to go on with the update; False to skip it (NAN_POLICY skip); raises for abort."""
        if torch.isfinite(total).item():
            self.consecutive_nan = 0
            return True
        terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        s = self.cfg.SOLVER
        if s.NAN_POLICY == "abort":
            raise TrainingDiverged(f"non-finite loss at iteration {iteration} ({terms}); SOLVER.NAN_POLICY is abort")
        self.nan_steps += 1
        self.consecutive_nan += 1
        if self.consecutive_nan >= s.MAX_CONSECUTIVE_NAN:
            raise TrainingDiverged(
                f"{self.consecutive_nan} consecutive non-finite losses up to iteration {iteration} ({terms}); "
                "lower SOLVER.BASE_LR or raise SOLVER.MAX_CONSECUTIVE_NAN"
            )
        return False

    def clip(self) -> None:
        c = self.cfg.SOLVER.CLIP_GRADIENTS
        if not c.ENABLED:
            return
        params = [p for p in self.model.parameters() if p.grad is not None]
        if c.CLIP_TYPE == "norm":
            torch.nn.utils.clip_grad_norm_(params, c.CLIP_VALUE, norm_type=c.NORM_TYPE)
        else:
            torch.nn.utils.clip_grad_value_(params, c.CLIP_VALUE)

    @staticmethod
    def _summary(losses, total, skipped: bool, overflow: bool = False) -> dict:
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["total_loss"] = float(total.detach())
        out["skipped"] = 1.0 if skipped else 0.0
        out["overflow"] = 1.0 if overflow else 0.0
        return out

    # -- batch-norm statistics
    def _bn_buffers(self) -> list[torch.Tensor]:
        if self._bn_modules is None:
            self._bn_modules = [m for m in self.model.modules()
                                if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.track_running_stats]
        return [buf for m in self._bn_modules for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
                if buf is not None]

    def _keep_bn_stats(self) -> list[torch.Tensor]:
        """Copy the running statistics before a forward pass that will update them; returns the buffers."""
        buffers = self._bn_buffers() if self.model.training else []
        if not buffers:
            return buffers
        if len(self._bn_copy) != len(buffers) or any(c.shape != b.shape or c.device != b.device
                                                      for c, b in zip(self._bn_copy, buffers)):
            self._bn_copy = [b.detach().clone() for b in buffers]
        else:
            torch._foreach_copy_(self._bn_copy, buffers)
        return buffers

    def _restore_bn_stats(self, buffers: list[torch.Tensor]) -> None:
        if buffers:
            torch._foreach_copy_(buffers, self._bn_copy)

    def nonfinite_state(self) -> str | None:
        """What is not finite in the model (weights or batch-norm statistics), or None."""
        for name, tensor in list(self.model.named_parameters()) + list(self.model.named_buffers()):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return name
        return None

    # -- the step
    def run_step(self, batch: dict, after_backward: Callable[[], None] = lambda: None, iteration: int = 0) -> dict:
        images, targets = self.to_device(batch)
        kept = self._keep_bn_stats()
        losses = self.forward(images, targets)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        try:
            finite = self.finite_or_skip(losses, total, iteration)
        except TrainingDiverged:
            self._restore_bn_stats(kept)  # the model stays usable (and saveable) as it was
            raise
        if not finite:
            self._restore_bn_stats(kept)
            return self._summary(losses, total, skipped=True)
        return self.update(losses, total, after_backward)

    def update(self, losses: dict[str, torch.Tensor], total: torch.Tensor, after_backward: Callable[[], None]) -> dict:
        """Backward and optimizer step for a finite loss; returns the step's summary."""
        total.backward()
        after_backward()
        self.clip()
        self.optimizer.step()
        return self._summary(losses, total, skipped=False)

    def state_dict(self) -> dict:
        return {"nan_steps": self.nan_steps, "consecutive_nan": self.consecutive_nan,
                "overflow_steps": self.overflow_steps}

    def load_state_dict(self, state: dict) -> None:
        self.nan_steps = state.get("nan_steps", 0)
        self.consecutive_nan = state.get("consecutive_nan", 0)
        self.overflow_steps = state.get("overflow_steps", 0)


class FP32Trainer(Trainer):
    """Plain fp32 steps."""


class AMPTrainer(Trainer):
    """Mixed precision: fp16 autocast with a GradScaler on CUDA; bf16 autocast on the CPU.

    bf16 keeps fp32's exponent range, so the CPU path needs no loss scaling. The
    scaler (init scale 2^16, growth interval 2000, as FastReID) is checkpointed,
    so a resumed run scales exactly as an uninterrupted one would.
    """

    def __init__(self, model, optimizer, cfg, device):
        super().__init__(model, optimizer, cfg, device)
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", init_scale=2.0**16, growth_interval=2000) if device.type == "cuda" else None

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def update(self, losses, total, after_backward) -> dict:
        if self.scaler is None:
            return super().update(losses, total, after_backward)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        after_backward()
        self.clip()
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # The scaler lowers its scale exactly when it found inf/nan gradients and skipped the step.
        overflow = self.scaler.get_scale() < scale or not math.isfinite(scale)
        if overflow:
            self.overflow_steps += 1
        return self._summary(losses, total, skipped=overflow, overflow=overflow)

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
