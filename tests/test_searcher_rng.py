"""Searcher.rng(): one generator per searcher, seeded once, saved and restored with the searcher's state."""

from __future__ import annotations

from reidplug.core import state as state_codec
from reidplug.core.searcher import Searcher
from reidplug.core.space import SearchSpace

SPACE = SearchSpace.parse({"x": {"uniform": [0.0, 1.0]}, "k": {"randint": [0, 1000]}}, schema=False)


class Draws(Searcher):
    """A searcher built on rng() only, as a plugin author would write one."""

    def _suggest(self, trial_id):
        return self.space.sample(self.rng())


def test_two_calls_do_not_repeat_points():
    searcher = Draws(SPACE, seed=3)
    points = [searcher.suggest(i) for i in range(5)]
    assert len({tuple(p.values()) for p in points}) == 5
    assert searcher.rng() is searcher.rng()


def test_same_seed_same_points_other_seed_other_points():
    assert [Draws(SPACE, seed=3).suggest(i) for i in range(2)] == [Draws(SPACE, seed=3).suggest(i) for i in range(2)]
    assert Draws(SPACE, seed=3).suggest(0) != Draws(SPACE, seed=4).suggest(0)


def test_resume_continues_the_stream_exactly():
    first = Draws(SPACE, seed=7)
    for i in range(3):
        first.suggest(i)
    # through the journal's codec, as a resumed experiment loads it
    saved = state_codec.loads(state_codec.dumps(first.state_dict()))
    resumed = Draws(SPACE, seed=7)
    resumed.load_state_dict(saved)
    assert [resumed.suggest(i) for i in range(3, 6)] == [first.suggest(i) for i in range(3, 6)]


def test_a_searcher_that_never_draws_keeps_its_state_as_before():
    assert "generator" not in Draws(SPACE, seed=0).state_dict()
