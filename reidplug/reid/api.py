"""Train and evaluate from Python or the CLI."""

from __future__ import annotations

from reidplug.core.errors import UserError


def train(config, overrides=(), *, resume=False):
    """Train one model from a config."""
    raise UserError("reidplug train: the training engine is not available in this version yet")


def evaluate(config, overrides=(), *, vis=0):
    """Evaluate MODEL.WEIGHTS on DATASETS.TESTS."""
    raise UserError("reidplug eval: the evaluation command is not available in this version yet")
