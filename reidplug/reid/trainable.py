"""A Re-ID training run as a Trainable: one step = TUNE.STEP_EPOCHS epochs + evaluation.

A trial given several devices trains data-parallel: TUNE.RESOURCES_PER_TRIAL.GPU >= 2
starts one rank per GPU (NCCL), and on the CPU, TUNE.RESOURCES_PER_TRIAL.CPU_PROCESSES > 1
starts that many gloo ranks. The ranks live as long as the trial; each step, save and load
is a call on all of them, and rank 0 reports and writes.
"""

from __future__ import annotations

import math
import os
import time

import torch

from reidplug.core.trainable import Trainable

CHECKPOINT = "checkpoint.pth"


def trial_processes(cfg, device: str) -> int:
    """How many data-parallel ranks a trial of `cfg` runs on `device`."""
    res = cfg.TUNE.RESOURCES_PER_TRIAL
    if device == "cuda":
        return int(math.floor(res.GPU)) if res.GPU >= 2 else 1
    return max(int(getattr(res, "CPU_PROCESSES", 1)), 1)


class ReIDTrainable(Trainable):
    """Trains the trial's config on its DATASETS.NAMES and reports rank1, mAP, mINP, score, epoch."""

    group = None

    @classmethod
    def prepare(cls, config):
        """Read (and for the synthetic set, generate) every dataset the search trains and tests on."""
        from reidplug.core.errors import ConfigError
        from reidplug.reid.data.build import build_dataset
        from reidplug.reid.modeling.backbones.pretrained import weights_file
        from reidplug.reid.modeling.choices import with_file

        for key, names in (("DATASETS.NAMES", config.DATASETS.NAMES), ("DATASETS.TESTS", config.DATASETS.TESTS)):
            for name in dict.fromkeys(names):
                build_dataset(config, name, config_key=key)
        searched = {k for k in config.TUNE.SPACE if k.startswith("MODEL.BACKBONE.PRETRAIN")}
        if config.MODEL.BACKBONE.PRETRAIN and not searched:
            # Every trial would fail on it: say so once, before the experiment writes anything.
            try:
                weights_file(config.MODEL.BACKBONE.PRETRAIN_PATH)
            except ConfigError as exc:
                raise with_file(exc, config) from None

    def setup(self, params, context):
        super().setup(params, context)
        cfg = context.full_config(params)
        # The trial's resources decide: a trial given no GPU trains on the CPU.
        device = "cuda" if context.device == "cuda" and torch.cuda.is_available() else "cpu"
        self.cfg = cfg
        processes = trial_processes(cfg, device)
        if processes == 1:
            self.training = _build(params, context, device)
            return
        from reidplug.reid.engine.launch import LaunchPlan, RankGroup

        threads = max(int(cfg.TUNE.RESOURCES_PER_TRIAL.CPU) // processes, 1)
        self.group = RankGroup(LaunchPlan(processes=processes, device_type=device, threads=threads,
                                          log_path=os.path.join(context.trial_dir, "log.txt")))
        self.group.start()
        self.group.call(_rank_setup, params, context, device)

    def step(self):
        if self.group is not None:
            return self.group.call(_rank_step, self.context.step_epochs)[0]
        return _step(self.training, self.cfg, self.context.step_epochs)

    def save(self, checkpoint_dir):
        path = os.path.join(checkpoint_dir, CHECKPOINT)
        if self.group is not None:
            self.group.call(_rank_save, path)
            return
        from reidplug.reid.engine.checkpoint import save_file

        save_file(self.training.state_dict(), path)

    def load(self, checkpoint_dir):
        path = os.path.join(checkpoint_dir, CHECKPOINT)
        if self.group is not None:
            self.group.call(_rank_load, path)
            return
        _load(self.training, path)

    def cleanup(self):
        if self.group is not None:
            group, self.group = self.group, None
            group.close()


def _build(params, context, device):
    from reidplug.reid.engine.training import ReIDTraining

    cfg = context.full_config(params)
    cfg.OUTPUT_DIR = context.trial_dir
    return ReIDTraining(cfg, context.trial_dir, seed=context.seed, device=device, echo=True, progress_period_s=30.0)


def _step(training, cfg, epochs: int) -> dict:
    t0 = time.perf_counter()
    remaining = cfg.SOLVER.MAX_EPOCH - training.epoch
    training.run_epochs(max(min(epochs, remaining), 1))
    train_s = time.perf_counter() - t0
    metrics = training.evaluate()
    row = training.progress.last_row
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    out.update({
        "epoch": training.epoch,
        "loss": row.get("total_loss", float("nan")),
        "lr": row.get("lr", 0.0),
        "images_per_s": row.get("images_per_s", 0.0),
        "train_s": round(train_s, 3),
        "eval_s": round(time.perf_counter() - t0 - train_s, 3),
    })
    if training.epoch >= cfg.SOLVER.MAX_EPOCH:
        out["done"] = True
    return out


def _load(training, path: str) -> None:
    from reidplug.reid.engine.checkpoint import load_file

    training.load_state_dict(load_file(path), source=path)


# ---------------------------------------------------------------- inside the ranks of a trial


def _rank_setup(state, params, context, device):
    state["training"] = _build(params, context, device)


def _rank_step(state, epochs):
    training = state["training"]
    return _step(training, training.cfg, epochs)


def _rank_save(state, path):
    from reidplug.reid.engine import distributed as D
    from reidplug.reid.engine.checkpoint import save_file

    training = state["training"]
    training.gather_rng_states()
    if D.is_main():
        save_file(training.state_dict(), path)
    D.barrier()


def _rank_load(state, path):
    _load(state["training"], path)
