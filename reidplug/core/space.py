"""Search-space domains, written in YAML under TUNE.SPACE keyed by dotted config paths.

    TUNE:
      SPACE:
        SOLVER.BASE_LR: {loguniform: [1.0e-5, 1.0e-3]}
        SOLVER.IMS_PER_BATCH: {choice: [32, 64, 128]}

Each domain maps to and from the unit interval so that model-based searchers
(BOHB, nevergrad, skopt) can work in a cube; a choice maps its index.
`randint: [low, high]` excludes `high`, as in hyperopt and Ray Tune.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reidplug.core.errors import ConfigError


class Domain:
    """One searched parameter: where its values lie and how they map to the unit interval.

    A searcher maps a domain onto its own library by its class (or `kind`) and
    attributes: `Choice` has `.values`; the bounded domains (`Uniform`,
    `LogUniform`, `QUniform`, `QLogUniform`, `RandInt`) have `.low`, `.high`,
    `.q` (a step, or None) and `.log` (True: sample on a log scale). Values a
    library proposes come back through `Choice.values[i]` or `from_number()`.
    A searcher that works in the unit cube uses `to_unit`/`from_unit` instead.
    """

    #: The YAML name of the domain: "choice", "uniform", "loguniform", "quniform", "qloguniform", "randint".
    kind = ""
    #: True for `Choice`: values are unordered categories.
    categorical = False
    #: True for `RandInt`: values are the integers low..high-1.
    integer = False

    def sample(self, rng: np.random.Generator) -> Any:
        """A random value, drawn with `rng` (pass the searcher's `rng()`)."""
        return self.from_unit(rng.random())

    def to_unit(self, value) -> float:
        """`value` as a number in [0, 1] (a choice: the middle of its index's cell)."""
        raise NotImplementedError

    def from_unit(self, u: float) -> Any:
        """The value at `u` in [0, 1] (clipped into it); the inverse of `to_unit`, of the right type."""
        raise NotImplementedError

    def contains(self, value) -> bool:
        """Whether `value` is one this domain can produce."""
        raise NotImplementedError

    def clip(self, value) -> Any:
        """The nearest value inside the domain (bounded and quantized; a choice's first value if unknown)."""
        raise NotImplementedError

    def grid(self, n: int) -> list:
        """`n` evenly spread values (all values for a choice or a small integer range)."""
        return [self.from_unit(u) for u in (np.linspace(0, 1, n) if n > 1 else [0.5])]

    def spec(self) -> dict:
        """The YAML form, e.g. `{"loguniform": [1e-5, 1e-3]}`."""
        raise NotImplementedError

    def __repr__(self):
        return f"{self.spec()}"

    def __eq__(self, other):
        return type(other) is type(self) and other.spec() == self.spec()


class Choice(Domain):
    """`{choice: [v1, v2, ...]}`: one of `values` (any YAML values: numbers, strings, lists, mappings).

    `.values` is the list; `index(value)` its position. A searcher hands out the
    value itself, never its index (the experiment checks); list and mapping
    values are copied by `sample` and `from_unit`.
    """

    kind = "choice"
    categorical = True

    def __init__(self, values):
        self.values = list(values)

    def sample(self, rng):
        return _copy(self.values[int(rng.integers(len(self.values)))])

    def index(self, value) -> int:
        """The position of `value` in `values` (ValueError if absent); `True` and `1` are told apart."""
        # Prefer an exact type match so that True and 1 stay different values.
        for i, v in enumerate(self.values):
            if type(v) is type(value) and v == value:
                return i
        for i, v in enumerate(self.values):
            if v == value:
                return i
        raise ValueError(f"{value!r} is not one of {self.values!r}")

    def to_unit(self, value):
        return (self.index(value) + 0.5) / len(self.values)

    def from_unit(self, u):
        return _copy(self.values[min(int(u * len(self.values)), len(self.values) - 1)])

    def contains(self, value):
        return any(v == value for v in self.values)

    def clip(self, value):
        return value if self.contains(value) else self.values[0]

    def grid(self, n):
        return list(self.values)

    def spec(self):
        return {"choice": list(self.values)}


def _copy(value):
    """A list or mapping value is handed out as a copy, so a trial cannot change the space."""
    import copy

    return copy.deepcopy(value) if isinstance(value, (list, dict)) else value


class _Bounded(Domain):
    """A number bounded by `.low` and `.high`; `.q` is the step values are rounded to (None: no
    rounding) and `.log` is True when values are uniform in their logarithm."""

    log = False
    q: float | None = None

    def __init__(self, low, high, q=None):
        self.low, self.high, self.q = low, high, q

    def _fwd(self, x):
        return math.log(x) if self.log else x

    def _inv(self, y):
        return math.exp(y) if self.log else y

    def _quantize(self, x):
        if self.q is None:
            return x
        x = round(x / self.q) * self.q
        x = min(max(x, self.low), self.high)
        if float(self.q).is_integer() and float(self.low).is_integer():
            return int(round(x))
        return float(round(x, 12))

    def to_unit(self, value):
        lo, hi = self._fwd(self.low), self._fwd(self.high)
        return float(min(max((self._fwd(value) - lo) / (hi - lo), 0.0), 1.0))

    def from_unit(self, u):
        lo, hi = self._fwd(self.low), self._fwd(self.high)
        # exp(log(x)) can land a rounding error outside [low, high]
        x = min(max(self._inv(lo + min(max(float(u), 0.0), 1.0) * (hi - lo)), self.low), self.high)
        return self._quantize(x)

    def contains(self, value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def clip(self, value):
        x = self._quantize(min(max(value, self.low), self.high))
        return float(x) if self.q is None else x

    def from_number(self, raw) -> Any:
        """This domain's value for a number a searcher library proposed (numpy scalars too): clipped
        into [low, high], rounded to `q`, an `int` where `q` and `low` are whole numbers, else a float."""
        v = self.clip(float(raw))
        return v if isinstance(v, int) and self.q is not None else float(v)

    def spec(self):
        args = [self.low, self.high] + ([self.q] if self.q is not None else [])
        return {self.kind: args}


class Uniform(_Bounded):
    """`{uniform: [low, high]}`: a float, uniform in [low, high]."""

    kind = "uniform"


class LogUniform(_Bounded):
    """`{loguniform: [low, high]}`: a float in [low, high] (low > 0), uniform in its logarithm; `.log` is True."""

    kind = "loguniform"
    log = True


class QUniform(_Bounded):
    """`{quniform: [low, high, q]}`: uniform in [low, high], rounded to a multiple of `q`.

    An `int` when `q` and `low` are whole numbers, else a float.
    """

    kind = "quniform"


class QLogUniform(_Bounded):
    """`{qloguniform: [low, high, q]}`: log-uniform in [low, high], rounded to a multiple of `q`."""

    kind = "qloguniform"
    log = True


class RandInt(_Bounded):
    """`{randint: [low, high]}`: an `int` in low..high-1 (`high` excluded, as in hyperopt and Ray Tune).

    `.q` is None and `.log` False; `integer` is True.
    """

    kind = "randint"
    integer = True

    def __init__(self, low, high):
        super().__init__(int(low), int(high))

    def sample(self, rng):
        return int(rng.integers(self.low, self.high))

    def to_unit(self, value):
        return (value - self.low + 0.5) / (self.high - self.low)

    def from_unit(self, u):
        return int(min(self.low + int(float(u) * (self.high - self.low)), self.high - 1))

    def contains(self, value):
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value < self.high

    def clip(self, value):
        return int(min(max(round(value), self.low), self.high - 1))

    def from_number(self, raw) -> int:
        """The `int` for a number a library proposed, clipped into low..high-1."""
        return self.clip(int(raw))

    def grid(self, n):
        if self.high - self.low <= n:
            return list(range(self.low, self.high))
        return sorted({self.from_unit(u) for u in np.linspace(0, 1, n, endpoint=False) + 0.5 / n})


DOMAINS = {
    "choice": Choice,
    "uniform": Uniform,
    "loguniform": LogUniform,
    "quniform": QUniform,
    "qloguniform": QLogUniform,
    "randint": RandInt,
}
_ARITY = {"uniform": 2, "loguniform": 2, "quniform": 3, "qloguniform": 3, "randint": 2}


def parse_domain(spec, *, key: str, file: str | None = None) -> Domain:
    """A Domain from `{kind: args}`; every malformed spec is a ConfigError at `key`."""

    def fail(reason):
        return ConfigError(reason, file=file, key=key)

    if isinstance(spec, Domain):
        return spec
    if not isinstance(spec, dict) or len(spec) != 1:
        raise fail(f"expected one of {{{', '.join(DOMAINS)}}}: [...], got {spec!r}")
    (kind, args), = spec.items()
    if kind not in DOMAINS:
        import difflib

        close = difflib.get_close_matches(str(kind), DOMAINS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise fail(f"unknown domain {kind!r}{hint}; known: {', '.join(DOMAINS)}")
    if not isinstance(args, list):
        raise fail(f"{kind} takes a list, got {args!r}")
    if kind == "choice":
        if not args:
            raise fail("choice needs at least one value")
        return Choice(args)
    if len(args) != _ARITY[kind]:
        shape = "[low, high, q]" if _ARITY[kind] == 3 else "[low, high]"
        raise fail(f"{kind} takes {shape}, got {args!r}")
    if any(isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
        raise fail(f"{kind} bounds must be numbers, got {args!r}")
    low, high = args[0], args[1]
    if not (math.isfinite(low) and math.isfinite(high)):
        raise fail(f"{kind} bounds must be finite, got {args!r}")
    if low >= high:
        raise fail(f"low must be below high, got low={low!r} high={high!r}")
    if kind in ("loguniform", "qloguniform") and low <= 0:
        raise fail(f"{kind} needs positive bounds, got low={low!r}")
    if kind == "randint":
        if not all(isinstance(a, int) for a in args):
            raise fail(f"randint bounds must be integers, got {args!r}")
        return RandInt(low, high)
    if len(args) == 3:
        q = args[2]
        if q <= 0:
            raise fail(f"{kind} needs a positive step q, got {q!r}")
        return DOMAINS[kind](low, high, q)
    return DOMAINS[kind](low, high)


def _check_value_type(tp, domain: Domain, key: str, file) -> None:
    """Values the domain can produce must fit the config key's type."""
    import typing

    from reidplug.core.config import _Ctx, Origins, convert

    ctx = _Ctx(Origins(default=file))
    if isinstance(domain, Choice):
        for value in domain.values:
            try:
                convert(tp, value, key, ctx)
            except ConfigError as exc:
                raise ConfigError(f"choice value {value!r} does not fit: {exc.reason}", file=file, key=key) from None
        return
    integral = isinstance(domain, RandInt) or (
        domain.q is not None and float(domain.q).is_integer() and float(domain.low).is_integer()
    )
    if tp is int and not integral:
        raise ConfigError(
            f"{domain.kind} gives fractional values but the key takes integers; use randint, choice or an integer q",
            file=file,
            key=key,
        )
    if tp not in (int, float):
        name = getattr(tp, "__name__", None) or str(typing.get_origin(tp) or tp)
        raise ConfigError(f"{domain.kind} gives numbers but the key takes {name}; use choice", file=file, key=key)


class SearchSpace:
    """Named domains in a fixed order (the order of the unit-cube coordinates).

    A mapping of names (dotted config keys, e.g. "SOLVER.BASE_LR") to `Domain`s:
    `space["SOLVER.BASE_LR"]`, `for name in space`, `space.items()`, `len(space)`.
    """

    def __init__(self, domains: dict[str, Domain]):
        self.domains = dict(domains)

    @classmethod
    def parse(cls, spec: dict | None, *, file: str | None = None, prefix: str = "TUNE.SPACE", schema: bool = True):
        """Parse and check a TUNE.SPACE mapping; with `schema`, keys must be config keys."""
        from reidplug.core.config import leaf_type, schema_keys

        if spec is None:
            return cls({})
        if not isinstance(spec, dict):
            raise ConfigError(f"expected a mapping of dotted keys to domains, got {spec!r}", file=file, key=prefix)
        domains = {}
        for name, dspec in spec.items():
            key = f"{prefix}.{name}"
            domain = parse_domain(dspec, key=key, file=file)
            if schema:
                tp = leaf_type(str(name))
                if tp is None:
                    import difflib

                    close = difflib.get_close_matches(str(name), list(schema_keys()), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise ConfigError(f"{name!r} is not a config key{hint}", file=file, key=key)
                _check_value_type(tp, domain, key, file)
            domains[str(name)] = domain
        return cls(domains)

    def __len__(self):
        return len(self.domains)

    def __iter__(self):
        return iter(self.domains)

    def items(self):
        """(name, Domain) pairs in order."""
        return self.domains.items()

    def __getitem__(self, name) -> Domain:
        return self.domains[name]

    def sample(self, rng: np.random.Generator) -> dict:
        """One random configuration {name: value}."""
        return {name: d.sample(rng) for name, d in self.domains.items()}

    def to_unit(self, params: dict) -> np.ndarray:
        """A configuration as a point of the unit cube, one coordinate per domain in order."""
        return np.array([d.to_unit(params[name]) for name, d in self.domains.items()], dtype=float)

    def from_unit(self, vector) -> dict:
        """The configuration at a point of the unit cube."""
        return {name: d.from_unit(u) for (name, d), u in zip(self.domains.items(), vector)}

    def contains(self, params: dict) -> bool:
        """Whether every domain has a value in `params` that it can produce."""
        return all(name in params and d.contains(params[name]) for name, d in self.domains.items())

    def clip(self, params: dict) -> dict:
        """`params` with each searched value moved into its domain; other keys kept as they are."""
        return {name: (self.domains[name].clip(v) if name in self.domains else v) for name, v in params.items()}

    def spec(self) -> dict:
        """The YAML form of the whole space."""
        return {name: d.spec() for name, d in self.domains.items()}
