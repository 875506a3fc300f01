"""Search-space domains and their validation."""

from __future__ import annotations

import numpy as np
import pytest

from reidplug.core.errors import ConfigError
from reidplug.core.space import Choice, LogUniform, QUniform, RandInt, SearchSpace, Uniform


def test_parse_and_sample_each_domain():
    space = SearchSpace.parse({
        "SOLVER.BASE_LR": {"loguniform": [1e-5, 1e-3]},
        "SOLVER.IMS_PER_BATCH": {"choice": [32, 64, 128]},
        "SOLVER.WEIGHT_DECAY": {"uniform": [0.0, 1e-3]},
        "DATALOADER.NUM_INSTANCE": {"randint": [2, 9]},
        "SOLVER.MAX_EPOCH": {"quniform": [10, 60, 10]},
        "MODEL.LOSSES.TRI.MARGIN": {"qloguniform": [0.1, 1.0, 0.1]},
    })
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = space.sample(rng)
        assert space.contains(p)
        assert p["SOLVER.IMS_PER_BATCH"] in (32, 64, 128)
        assert isinstance(p["DATALOADER.NUM_INSTANCE"], int) and 2 <= p["DATALOADER.NUM_INSTANCE"] < 9
        assert isinstance(p["SOLVER.MAX_EPOCH"], int) and p["SOLVER.MAX_EPOCH"] % 10 == 0
        assert 1e-5 <= p["SOLVER.BASE_LR"] <= 1e-3
        back = space.from_unit(space.to_unit(p))
        assert back["SOLVER.IMS_PER_BATCH"] == p["SOLVER.IMS_PER_BATCH"]
        assert back["DATALOADER.NUM_INSTANCE"] == p["DATALOADER.NUM_INSTANCE"]
        assert back["SOLVER.BASE_LR"] == pytest.approx(p["SOLVER.BASE_LR"])


def test_loguniform_is_uniform_in_log_space():
    d = LogUniform(1e-4, 1e-2)
    xs = np.array([d.sample(np.random.default_rng(i)) for i in range(2000)])
    assert 0.4 < np.mean(xs < 1e-3) < 0.6  # the geometric middle splits the mass in half


def test_clip_and_grid():
    assert Uniform(0, 1).clip(1.7) == 1 and RandInt(0, 5).clip(9) == 4 and QUniform(0, 10, 5).clip(7.6) == 10
    assert Choice(["a", "b"]).grid(5) == ["a", "b"]
    assert RandInt(1, 4).grid(10) == [1, 2, 3]
    assert LogUniform(1e-4, 1e-2).grid(3) == pytest.approx([1e-4, 1e-3, 1e-2])


def test_choice_keeps_true_and_one_apart():
    c = Choice([1, True])
    assert c.index(True) == 1 and c.index(1) == 0


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({"SOLVER.BASE_LR": {"uniform": [1.0, 0.5]}}, "low must be below high"),
        ({"SOLVER.BASE_LR": {"loguniform": [0.0, 1.0]}}, "needs positive bounds"),
        ({"SOLVER.BASE_LR": {"choice": []}}, "at least one value"),
        ({"SOLVER.BASE_LR": {"gaussian": [0, 1]}}, "unknown domain 'gaussian'"),
        ({"SOLVER.BASE_LR": {"uniform": [0, 1, 2]}}, "takes [low, high]"),
        ({"SOLVER.BASE_LR": {"quniform": [0, 1, -1]}}, "positive step q"),
        ({"SOLVER.BASE_LR": {"uniform": ["a", 1]}}, "must be numbers"),
        ({"SOLVER.BASE_LR": 0.1}, "expected one of"),
        ({"SOLVER.BASE_LRR": {"uniform": [0, 1]}}, "is not a config key (did you mean 'SOLVER.BASE_LR'?)"),
        ({"SOLVER.IMS_PER_BATCH": {"uniform": [16, 64]}}, "key takes integers"),
        ({"SOLVER.IMS_PER_BATCH": {"choice": [32, "big"]}}, "choice value 'big' does not fit"),
        ({"MODEL.BACKBONE.NAME": {"uniform": [0, 1]}}, "use choice"),
        ({"DATALOADER.NUM_INSTANCE": {"randint": [2.5, 9]}}, "must be integers"),
    ],
)
def test_space_errors_name_the_key(spec, fragment):
    with pytest.raises(ConfigError) as info:
        SearchSpace.parse(spec, file="search.yml")
    msg = str(info.value)
    (key,) = spec
    assert msg.startswith(f"search.yml: TUNE.SPACE.{key}: "), msg
    assert fragment in msg


def test_free_keys_without_schema():
    space = SearchSpace.parse({"lr": {"loguniform": [1e-4, 1e-1]}}, schema=False)
    assert list(space) == ["lr"]
