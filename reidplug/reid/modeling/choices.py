"""Lookup of a configured name among the known ones, failing with a one-line ConfigError."""

from __future__ import annotations

import difflib
from typing import Any, Mapping

from reidplug.core.errors import ConfigError


def choose(table: Mapping[str, Any], name: str, key: str) -> Any:
    """The entry of `table` called `name`; an unknown name is a ConfigError at `key` listing the known ones."""
    if name in table:
        return table[name]
    hint = difflib.get_close_matches(str(name), list(table), n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ConfigError(f"unknown value {name!r}{did_you_mean}; known: {', '.join(table)}", key=key)


def with_file(exc: ConfigError, cfg: Any) -> ConfigError:
    """The same error (same class), naming the config file that set its key when the config knows it."""
    origins = getattr(cfg, "origins", None)
    if exc.file is not None or exc.key is None or origins is None:
        return exc
    return type(exc)(exc.reason, file=origins.of(exc.key), key=exc.key)
