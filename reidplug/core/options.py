"""Options of searchers, schedulers, executors and reporters.

A component class lists its options with their defaults in `OPTIONS`
(upper-case names); users set them in the config section named after the
component, e.g. `TUNE.ASHA: {GRACE_PERIOD: 2}`. The component receives them
as lower-case keyword arguments.
"""

from __future__ import annotations

import difflib
from typing import Any

from reidplug.core.errors import ConfigError


def resolve_options(cls: Any, section: dict | None, *, key: str, file: str | None = None) -> dict:
    """Defaults overlaid with `section`, checked by name and by the default's type."""
    defaults: dict = dict(getattr(cls, "OPTIONS", {}) or {})
    out = {name.lower(): value for name, value in defaults.items()}
    for name, value in (section or {}).items():
        upper = str(name).upper()
        if upper not in defaults:
            close = difflib.get_close_matches(upper, list(defaults), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(defaults) or "none"
            raise ConfigError(f"unknown option{hint}; options: {known}", file=file, key=f"{key}.{name}")
        out[upper.lower()] = _check(defaults[upper], value, f"{key}.{name}", file)
    return out


def _check(default, value, key, file):
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", file=file, key=key)
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", file=file, key=key)
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"expected an integer, got {value!r}", file=file, key=key)
            value = int(value)
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"expected a string, got {value!r}", file=file, key=key)
    if isinstance(default, (list, tuple)) and not isinstance(value, (list, tuple)):
        raise ConfigError(f"expected a list, got {value!r}", file=file, key=key)
    if isinstance(default, dict) and not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {value!r}", file=file, key=key)
    return value
