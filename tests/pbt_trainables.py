"""Trainables for the scheduler tests, and a driver that runs an Experiment in this process."""

from __future__ import annotations

import hashlib
import os

from reidplug.core import checkpoints as ckpt
from reidplug.core.trainable import Trainable, TrialContext
from reidplug.core.trial import Decision, TrialStatus

STEP_SIZE, GAMMA = 2, 0.5  # the StepLR schedule of LinearRegression


def digest(obj) -> str:
    """A hash of nested dicts/lists of tensors and numbers: equal digests mean equal states."""
    h = hashlib.sha256()

    def feed(o):
        import torch

        if isinstance(o, dict):
            for k in sorted(o, key=str):
                h.update(repr(k).encode())
                feed(o[k])
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                feed(v)
            h.update(b"]")
        elif isinstance(o, torch.Tensor):
            h.update(f"{o.dtype}{tuple(o.shape)}".encode())
            h.update(o.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(o).encode())

    feed(obj)
    return h.hexdigest()


class LinearRegression(Trainable):
    """Least squares by SGD with momentum and a StepLR schedule; saves weights, optimizer, schedule and step."""

    def setup(self, params, context):
        import torch

        super().setup(params, context)
        torch.manual_seed(context.seed)
        data = torch.Generator().manual_seed(0)  # every trial fits the same data
        self.X = torch.randn(256, 8, generator=data)
        w = torch.randn(8, 1, generator=data)
        self.y = self.X @ w + 0.1 * torch.randn(256, 1, generator=data)
        self.model = torch.nn.Linear(8, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=params["lr"], momentum=params.get("momentum", 0.9))
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=STEP_SIZE, gamma=GAMMA)
        self.steps = 0
        self.start_step = 0
        self.start_digest = digest(self.state())

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "steps": self.steps}

    def step(self):
        import torch

        batches = torch.Generator().manual_seed(self.context.seed * 1000 + self.steps)
        for _ in range(4):
            idx = torch.randint(0, len(self.X), (32,), generator=batches)
            self.opt.zero_grad()
            loss = torch.nn.functional.mse_loss(self.model(self.X[idx]), self.y[idx])
            loss.backward()
            self.opt.step()
        self.sched.step()
        self.steps += 1
        with torch.no_grad():
            mse = torch.nn.functional.mse_loss(self.model(self.X), self.y).item()
        return {"score": -mse, "steps": self.steps, "base_lr": self.sched.base_lrs[0],
                "lr": self.opt.param_groups[0]["lr"], "start_step": self.start_step, "start_digest": self.start_digest}

    def save(self, checkpoint_dir):
        import torch

        torch.save(self.state(), os.path.join(checkpoint_dir, "state.pt"))

    def load(self, checkpoint_dir):
        import torch

        state = torch.load(os.path.join(checkpoint_dir, "state.pt"), weights_only=True)
        self.start_digest = digest(state)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.steps = self.start_step = state["steps"]
        # The saved schedule carries the old learning rate: this trial's (possibly mutated) one takes over.
        lr = self.params["lr"]
        self.sched.base_lrs = [lr for _ in self.opt.param_groups]
        for group in self.opt.param_groups:
            group["lr"] = lr * GAMMA ** (self.sched.last_epoch // STEP_SIZE)


class Curve(Trainable):
    """A learning curve that rises towards a plateau set by x: score = plateau(x) * (1 - 0.5**step)."""

    steps = 0

    def setup(self, params, context):
        super().setup(params, context)
        self.steps = 0

    def step(self):
        self.steps += 1
        x = self.params["x"]
        return {"score": (1 - (x - 0.3) ** 2) * (1 - 0.5**self.steps), "steps": self.steps}

    def save(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "steps.txt"), "w") as f:
            f.write(str(self.steps))

    def load(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "steps.txt")) as f:
            self.steps = int(f.read())


def save_checkpoint(exp, trial, trainable, step) -> str:
    path = exp.checkpoint_path(trial, step)
    staging = ckpt.staging_dir(path)
    staging.mkdir(parents=True, exist_ok=True)
    trainable.save(str(staging))
    ckpt.finalize(staging, path)
    return path


def drive(exp, trainable_cls, *, concurrency: int = 1, fail=None, limit=None) -> list[tuple[int, int, str]]:
    """Run the experiment's trials in this process, round robin over `concurrency` slots.

    Returns (trial id, step, decision) per result. `fail(trial, step)` -> True makes that step fail;
    `limit` stops after that many results, leaving trials running as a crash would.
    """
    running: dict[int, list] = {}
    log = []
    # ask() hands out at most TUNE.MAX_CONCURRENT running trials: this driver emulates `concurrency` slots.
    exp.cfg.TUNE.MAX_CONCURRENT = max(exp.cfg.TUNE.MAX_CONCURRENT, concurrency)
    while True:
        while len(running) < concurrency and (trial := exp.ask()) is not None:
            start = trial.checkpoint_step if trial.restore_from else 0
            context = TrialContext(trial_id=trial.id, trial_dir=str(exp.trial_dir(trial)), experiment_dir=str(exp.dir),
                                   seed=exp.trial_seed(trial), max_steps=exp.max_steps,
                                   restore_from=trial.restore_from, start_step=start)
            obj = trainable_cls()
            obj.setup(dict(trial.params), context)
            if trial.restore_from:
                obj.load(trial.restore_from)
            running[trial.id] = [trial, obj, start]
        if not running:
            return log
        for tid in list(running):
            if limit is not None and len(log) >= limit:
                return log
            trial, obj, step = running[tid]
            step += 1
            running[tid][2] = step
            if fail is not None and fail(trial, step):
                del running[tid]
                exp.fail(trial, "scripted failure")
                log.append((tid, step, "ERROR"))
                continue
            metrics = obj.step()
            path = save_checkpoint(exp, trial, obj, step) if exp.wants_checkpoint(trial, step) else None
            decision = exp.tell(trial, metrics, checkpoint=path, step=step)
            log.append((tid, step, decision.value))
            if trial.status == TrialStatus.ERROR or decision == Decision.STOP:
                del running[tid]
            elif decision == Decision.PAUSE:
                if trial.status != TrialStatus.PAUSED:
                    exp.mark_paused(trial, save_checkpoint(exp, trial, obj, step))
                del running[tid]


class NoisyQuadratic(Trainable):
    """SGD on a noisy quadratic (lr in params): large rates help early, small ones late."""

    steps = 0

    def setup(self, params, context):
        import numpy as np

        super().setup(params, context)
        self.theta = np.full(8, 10.0)
        self.h = np.logspace(-2.5, 0, 8)

    def step(self):
        import numpy as np

        rng = np.random.default_rng([self.context.seed, self.steps])
        for _ in range(25):
            self.theta = self.theta - self.params["lr"] * (self.h * self.theta + rng.normal(size=8))
        self.steps += 1
        return {"score": float(-np.log10(0.5 * np.sum(self.h * self.theta**2))), "steps": self.steps}

    def save(self, checkpoint_dir):
        import numpy as np

        np.save(os.path.join(checkpoint_dir, "theta.npy"), self.theta)
        with open(os.path.join(checkpoint_dir, "steps.txt"), "w") as f:
            f.write(str(self.steps))

    def load(self, checkpoint_dir):
        import numpy as np

        self.theta = np.load(os.path.join(checkpoint_dir, "theta.npy"))
        with open(os.path.join(checkpoint_dir, "steps.txt")) as f:
            self.steps = int(f.read())
