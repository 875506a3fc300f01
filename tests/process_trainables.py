"""Trainables that start processes of their own, as Re-ID trials do (loader workers, a generator's pool)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from reidplug.core.trainable import Trainable


def _square(x: int) -> int:
    return x * x


class StartsProcesses(Trainable):
    """Each step runs a spawned process pool and a DataLoader with two workers, and reports their pids."""

    def setup(self, params, context):
        super().setup(params, context)
        self.steps = 0

    def step(self):
        import torch
        from torch.utils.data import DataLoader

        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            squares = sum(pool.map(_square, range(4)))
        loader = DataLoader(list(range(8)), batch_size=4, num_workers=2)
        total = int(sum(batch.sum() for batch in loader))
        self.steps += 1
        return {"score": float(squares + total) + self.steps, "worker_pid": os.getpid(),
                "threads": torch.get_num_threads()}
