"""Named components per kind, filled by the `register_<kind>s` hooks."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from reidplug.core.errors import PluginError, UnknownComponentError

KINDS = ("trainer", "searcher", "scheduler", "reporter", "executor", "dataset", "backbone", "trainable")


def resolve(ref: str) -> Any:
    """Import `package.module:attr.sub` the normal way (never eval)."""
    module_name, _, qualname = ref.partition(":")
    if not module_name or not qualname:
        raise UnknownComponentError(f"{ref!r} is not a 'module:attribute' reference")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownComponentError(f"cannot import {module_name!r} (from {ref!r}): {exc}") from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UnknownComponentError(f"{module_name!r} has no attribute {qualname!r} (from {ref!r})") from None
    return obj


@dataclass
class Entry:
    name: str
    kind: str
    factory: Callable | str
    owner: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    _loaded: Any = field(default=None, repr=False)

    def load(self) -> Any:
        """The factory, importing it on first use when registered as 'module:attr'."""
        if self._loaded is None:
            self._loaded = resolve(self.factory) if isinstance(self.factory, str) else self.factory
        return self._loaded


class Registry:
    """Components of one kind, by name. Lookups are case-insensitive."""

    def __init__(self, kind: str):
        self.kind = kind
        self.failed: dict[str, str] = {}  # disabled plugin -> why, shown with unknown names
        self._entries: dict[str, Entry] = {}
        self._keys: dict[str, str] = {}  # lowercased name or alias -> canonical name

    def register(self, name: str, factory: Callable | str, *, owner: str, aliases=(), description: str = "") -> None:
        entry = Entry(name, self.kind, factory, owner, tuple(aliases), description)
        for key in (name, *entry.aliases):
            taken = self._keys.get(key.lower())
            if taken is not None:
                other = self._entries[taken].owner
                raise PluginError(
                    f"{self.kind} {key!r} is registered twice: by plugin {other!r} and by plugin {owner!r}"
                )
        self._entries[name] = entry
        for key in (name, *entry.aliases):
            self._keys[key.lower()] = name

    def entry(self, name: str, *, config_key: str | None = None) -> Entry:
        canonical = self._keys.get(str(name).lower())
        if canonical is None:
            known = sorted(self._entries)
            hint = difflib.get_close_matches(str(name), known, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            # A disabled plugin may be the one that would have provided it.
            broken = "".join(f"; plugin {p!r} is disabled {why}" for p, why in self.failed.items())
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}{did_you_mean}; known {self.kind}s: {', '.join(known) or 'none'}{broken}",
                key=config_key,
            )
        return self._entries[canonical]

    def drop_owner(self, owner: str) -> None:
        """Forget every component that plugin `owner` registered (it was disabled)."""
        for name in [n for n, e in self._entries.items() if e.owner == owner]:
            del self._entries[name]
        self._keys = {k: n for k, n in self._keys.items() if n in self._entries}

    def get(self, name: str, *, config_key: str | None = None) -> Any:
        return self.entry(name, config_key=config_key).load()

    def __contains__(self, name: str) -> bool:
        return str(name).lower() in self._keys

    def __iter__(self):
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return sorted(self._entries)
