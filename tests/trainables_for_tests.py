"""Small trainables the experiment-loop tests run in worker processes."""

from __future__ import annotations

import math
import os
import time

from reidplug.core.trainable import Trainable


def quadratic(config, report):
    """A function trainable: improves over steps, best at x = 0.3."""
    x = config["x"]
    for step in range(1, 4):
        report(score=-(x - 0.3) ** 2 + 0.01 * step, epoch=step)


def failing_when_big(config, report):
    if config["x"] > 0.5:
        raise ValueError(f"x={config['x']} is too big for this trainable")
    report(score=config["x"])


def nan_when_big(config, report):
    report(score=math.nan if config["x"] > 0.5 else config["x"])


class Counter(Trainable):
    """Counts steps, can be checkpointed; sleeps a little so that tests can interrupt it."""

    def setup(self, params, context):
        super().setup(params, context)
        self.count = 0
        self.delay = float(os.environ.get("REIDPLUG_TEST_DELAY", "0"))

    def step(self):
        time.sleep(self.delay)
        self.count += 1
        return {"score": self.params.get("x", 0.0) * 10 + self.count, "count": self.count}

    def save(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "count.txt"), "w") as f:
            f.write(str(self.count))

    def load(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "count.txt")) as f:
            self.count = int(f.read())


class DiesOnce(Counter):
    """Kills its own worker process (SIGKILL) at step 2 of its first attempt."""

    def step(self):
        marker = os.path.join(self.context.trial_dir, "killed-once")
        if self.count == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), 9)
        return super().step()


class AlwaysDies(Counter):
    """Kills its worker at step 2 every time."""

    def step(self):
        if self.count == 1:
            os.kill(os.getpid(), 9)
        return super().step()
