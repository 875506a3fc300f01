"""Random search."""

from __future__ import annotations

import numpy as np

from reidplug.core.hookspecs import hookimpl
from reidplug.core.searcher import Searcher


class RandomSearcher(Searcher):
    """Independent samples from the space."""

    def __init__(self, space, **kwargs):
        super().__init__(space, **kwargs)
        self._rng = np.random.default_rng(self.seed)

    def _suggest(self, trial_id):
        return self.space.sample(self._rng)

    def state_dict(self):
        return {**super().state_dict(), "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._rng.bit_generator.state = state["rng"]


@hookimpl
def register_searchers(register):
    register("random", RandomSearcher, description="independent random samples")
