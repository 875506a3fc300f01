"""A Re-ID training run as a Trainable: one step = TUNE.STEP_EPOCHS epochs + evaluation."""

from __future__ import annotations

import os
import time

import torch

from reidplug.core.trainable import Trainable

CHECKPOINT = "checkpoint.pth"


class ReIDTrainable(Trainable):
    """Trains the trial's config on its DATASETS.NAMES and reports rank1, mAP, mINP, score, epoch."""

    @classmethod
    def prepare(cls, config):
        """Read (and for the synthetic set, generate) every dataset the search trains and tests on."""
        from reidplug.reid.data.build import build_dataset

        for key, names in (("DATASETS.NAMES", config.DATASETS.NAMES), ("DATASETS.TESTS", config.DATASETS.TESTS)):
            for name in dict.fromkeys(names):
                build_dataset(config, name, config_key=key)

    def setup(self, params, context):
        from reidplug.reid.engine.training import ReIDTraining

        super().setup(params, context)
        cfg = context.full_config(params)
        cfg.OUTPUT_DIR = context.trial_dir
        # The trial's resources decide: a trial given no GPU trains on the CPU.
        device = "cuda" if context.device == "cuda" and torch.cuda.is_available() else "cpu"
        self.cfg = cfg
        self.training = ReIDTraining(cfg, context.trial_dir, seed=context.seed, device=device,
                                     echo=True, progress_period_s=30.0)

    def step(self):
        t0 = time.perf_counter()
        epochs = self.context.step_epochs
        remaining = self.cfg.SOLVER.MAX_EPOCH - self.training.epoch
        self.training.run_epochs(max(min(epochs, remaining), 1))
        train_s = time.perf_counter() - t0
        metrics = self.training.evaluate()
        row = self.training.progress.last_row
        out = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        out.update({
            "epoch": self.training.epoch,
            "loss": row.get("total_loss", float("nan")),
            "lr": row.get("lr", 0.0),
            "images_per_s": row.get("images_per_s", 0.0),
            "train_s": round(train_s, 3),
            "eval_s": round(time.perf_counter() - t0 - train_s, 3),
        })
        if self.training.epoch >= self.cfg.SOLVER.MAX_EPOCH:
            out["done"] = True
        return out

    def save(self, checkpoint_dir):
        from reidplug.reid.engine.checkpoint import save_file

        save_file(self.training.state_dict(), os.path.join(checkpoint_dir, CHECKPOINT))

    def load(self, checkpoint_dir):
        from reidplug.reid.engine.checkpoint import load_file

        path = os.path.join(checkpoint_dir, CHECKPOINT)
        self.training.load_state_dict(load_file(path), source=path)
