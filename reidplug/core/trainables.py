"""Small trainables that ship with the core (no torch)."""

from __future__ import annotations

from reidplug.core.trainable import Trainable


class NoopTrainable(Trainable):
    """Reports a value computed from its parameters without doing work; for overhead measurements."""

    def setup(self, params, context):
        super().setup(params, context)
        self.steps = 0

    def step(self):
        self.steps += 1
        numeric = [v for v in self.params.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return {"score": float(sum(numeric)) + self.steps * 1e-3}

    def save(self, checkpoint_dir):
        with open(f"{checkpoint_dir}/state.txt", "w") as f:
            f.write(str(self.steps))

    def load(self, checkpoint_dir):
        with open(f"{checkpoint_dir}/state.txt") as f:
            self.steps = int(f.read())
