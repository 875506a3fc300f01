"""Options of searchers, schedulers, executors and reporters.

A component class lists its options with their defaults in `OPTIONS`
(upper-case names); users set them in the config section named after the
component, e.g. `TUNE.ASHA: {GRACE_PERIOD: 2}` (an alias shares its component's
section). The component receives them as lower-case keyword arguments, and
finds the name of its section in `self.section` ("TUNE.ASHA"), set before its
`__init__` runs, for the keys of its own errors.

A value's type is the one the component's `__init__` annotates for that keyword
(`eta: float = 3` accepts 2.5; `int | None` accepts null), else the default's
type. `RESUMABLE_OPTIONS` names the options that do not change the search and may
change on resume (a reporter's or an executor's may always change).
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Any

from reidplug.core.errors import ConfigError

_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "tuple": list, "dict": dict,
          "None": type(None), "Sequence": list, "Mapping": dict}


def resolve_options(cls: Any, section: dict | None, *, key: str, file: str | None = None) -> dict:
    """Defaults overlaid with `section`, checked by name and by the type the component accepts."""
    defaults: dict = dict(getattr(cls, "OPTIONS", {}) or {})
    out = {name.lower(): value for name, value in defaults.items()}
    annotations = accepted_types(cls)
    for name, value in (section or {}).items():
        upper = str(name).upper()
        if upper not in defaults:
            close = difflib.get_close_matches(upper, list(defaults), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(defaults) or "none"
            raise ConfigError(f"unknown option{hint}; options: {known}", file=file, key=f"{key}.{name}")
        types = annotations.get(upper.lower())
        where = f"{key}.{name}"
        out[upper.lower()] = _check_types(types, value, where, file) if types else _check(defaults[upper], value, where, file)
    return out


def accepted_types(cls: Any) -> dict[str, set[type]]:
    """keyword -> the types its `__init__` annotation names; keywords without a readable annotation are left out.

    A keyword a subclass passes on through **kwargs is typed by the base class that names it.
    """
    inits = [klass.__dict__["__init__"] for klass in cls.__mro__ if "__init__" in klass.__dict__] \
        if inspect.isclass(cls) else [cls]
    out: dict[str, set[type]] = {}
    seen: set[str] = set()
    for init in inits:
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            continue
        for name, param in params.items():
            if name in seen or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            seen.add(name)
            note = param.annotation
            if note is inspect.Parameter.empty:
                seen.discard(name)  # a base class may still say
                continue
            types = _parse(note if isinstance(note, str) else getattr(note, "__name__", str(note)))
            if types:
                out[name] = types
    return out


def _parse(note: str) -> set[type] | None:
    """The types of an annotation written as text ("float", "int | None", "Optional[list[int]]")."""
    note = note.replace("typing.", "").strip()
    m = re.fullmatch(r"Optional\[(.*)\]", note)
    if m:
        inner = _parse(m.group(1))
        return inner | {type(None)} if inner else None
    m = re.fullmatch(r"Union\[(.*)\]", note)
    parts = _split(m.group(1) if m else note, "," if m else "|")
    types: set[type] = set()
    for part in parts:
        base = re.sub(r"\[.*\]$", "", part.strip())
        if base not in _TYPES:
            return None  # something we cannot check (Any, a class, a Literal): the default's type decides
        types.add(_TYPES[base])
    return types


def _split(text: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def _check_types(types: set[type], value, key, file):
    if value is None:
        if type(None) in types:
            return None
        raise ConfigError(f"expected {_names(types)}, got null", file=file, key=key)
    if isinstance(value, bool):
        if bool in types:
            return value
    elif isinstance(value, int):
        if int in types or float in types:
            return value
    elif isinstance(value, float):
        if float in types:
            return value
        if int in types and value.is_integer():
            return int(value)
        if int in types:
            raise ConfigError(f"expected an integer, got {value!r}", file=file, key=key)
    elif any(isinstance(value, t) for t in types if t is not type(None)):
        return value
    raise ConfigError(f"expected {_names(types)}, got {value!r}", file=file, key=key)


def _names(types: set[type]) -> str:
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
             dict: "a mapping", type(None): "null"}
    if float in types:
        types = types - {int}
    return " or ".join(words[t] for t in sorted(types, key=lambda t: list(words).index(t)))


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


def resumable_options(cls: Any, kind: str) -> set[str] | None:
    """The options of `cls` that may change on resume; None: all of them (reporters, executors)."""
    if kind in ("reporter", "executor"):
        return None
    return {str(name).upper() for name in (getattr(cls, "RESUMABLE_OPTIONS", None) or ())}
