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


class ExternalTrainable(Trainable):
    """Trials run by the application that drives the Experiment with ask()/tell(), not by reidplug.

    Like a function trainable, a trial has no step limit of its own (TUNE.MAX_STEPS 0):
    it ends at TUNE.MAX_STEPS when that is set, when the scheduler stops it, or when the
    application tells a result with `done: True`.
    """

    RUNS_UNTIL_DONE = True

    def step(self):
        raise RuntimeError("TUNE.TRAINABLE 'external': this experiment's trials are run by the application "
                           "through Experiment.ask() and tell(), not by `reidplug run`")
