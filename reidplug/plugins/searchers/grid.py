"""Grid search: the Cartesian product of a few values per domain."""

from __future__ import annotations

import math

import numpy as np

from reidplug.core.hookspecs import hookimpl
from reidplug.core.searcher import Searcher
from reidplug.core.space import Choice, Domain, RandInt

# An integer range this short is searched in full: a grid that skips some of
# [2, 6) for NUM_INSTANCE would surprise more than a slightly larger grid.
ALL_INTEGERS_UP_TO = 10


def grid_values(domain: Domain, points_per_dim: int) -> list:
    """The values a grid takes along one domain, without duplicates, in order."""
    if isinstance(domain, Choice):
        return list(domain.values)
    if isinstance(domain, RandInt) and domain.high - domain.low <= max(ALL_INTEGERS_UP_TO, points_per_dim):
        return list(range(domain.low, domain.high))
    values = []
    for v in domain.grid(points_per_dim):  # log domains are spaced evenly in log
        # exp(log(low)) can land a hair outside the bounds; clip() may hand back an int bound.
        v = domain.clip(v)
        v = v if isinstance(v, int) and (domain.integer or domain.q is not None) else float(v)
        if not any(type(v) is type(w) and v == w for w in values):  # quantizing can merge neighbours
            values.append(v)
    return values


class GridSearcher(Searcher):
    """Every combination of the grid values, in order or shuffled; then finished."""

    OPTIONS = {"POINTS_PER_DIM": 3, "SHUFFLE": False}

    def __init__(self, space, *, points_per_dim: int = 3, shuffle: bool = False, **kwargs):
        super().__init__(space, **kwargs)
        if int(points_per_dim) < 1:
            raise ValueError(f"POINTS_PER_DIM must be at least 1, got {points_per_dim!r}")
        self.points_per_dim = int(points_per_dim)
        self.shuffle = bool(shuffle)
        self._axes = [grid_values(d, self.points_per_dim) for d in space.domains.values()]
        self.size = math.prod(len(axis) for axis in self._axes)
        if self.shuffle and self.size > 10_000_000:
            raise ValueError(f"a shuffled grid of {self.size} points is too large; lower POINTS_PER_DIM")
        self._order = np.random.default_rng(self.seed).permutation(self.size) if self.shuffle else None
        self._next = 0

    @property
    def finished(self) -> bool:
        """True once every grid point (and every warm-start point) has been handed out."""
        return self._next >= self.size and not self._points

    def point(self, index: int) -> dict:
        """The grid point at `index` of the product, last domain varying fastest."""
        values = []
        for axis in reversed(self._axes):
            index, i = divmod(index, len(axis))
            values.append(axis[i])
        return dict(zip(self.space.domains, reversed(values)))

    def _suggest(self, trial_id):
        if self._next >= self.size:
            return None
        index = self._next if self._order is None else int(self._order[self._next])
        self._next += 1
        return self.point(index)

    def state_dict(self):
        return {**super().state_dict(), "next": self._next}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._next = int(state["next"])


@hookimpl
def register_searchers(register):
    register("grid", GridSearcher, description="Cartesian product of the domains' grid values, then finished")
