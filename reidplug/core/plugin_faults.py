"""Naming the plugin behind an exception that one of an experiment's components raised.

A searcher, scheduler or reporter runs inside the experiment process, so a bug in
one would otherwise surface as a traceback through reidplug's own frames. The
traceback is searched for the component's code; when it is found, the error
becomes one line that names the component, its plugin and its distribution, and
the traceback goes to `plugin_error.txt` in the experiment folder.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from reidplug.core.errors import PluginError, UserError


class PluginFault(PluginError):
    """A component of a plugin raised at run time (exit code 2, like every user error)."""

    def __init__(self, message: str, *, component: str = "", plugin: str = "", detail: str = ""):
        super().__init__(message)
        self.component, self.plugin, self.detail = component, plugin, detail


@dataclass
class Owner:
    """Who a built component belongs to: `searcher 'toy'` of plugin `toy` (distribution toy-dist 1.0)."""

    role: str
    name: str
    plugin: str
    distribution: str = "?"
    version: str = "?"
    builtin: bool = False

    def describe(self) -> str:
        what = f"{self.role} {self.name!r}"
        if self.builtin:
            return f"{what} (builtin plugin {self.plugin!r})"
        dist = f"distribution {self.distribution} {self.version}" if self.distribution != "?" else "distribution unknown"
        return f"{what} of plugin {self.plugin!r} ({dist})"


def owner_of(pm: Any, role: str, entry: Any) -> Owner:
    """The Owner of a registry entry, from what the plugin manager recorded of its plugin."""
    origin = getattr(pm, "origins", {}).get(entry.owner)
    if origin is None:
        return Owner(role, entry.name, entry.owner)
    return Owner(role, entry.name, entry.owner, origin.distribution, origin.version, origin.builtin)


def _modules_of(obj: Any) -> tuple[set[str], set[str]]:
    """(module names, package prefixes) holding the code of `obj` (a class or an instance), reidplug's core excluded."""
    modules, packages = set(), set()
    for cls in (obj if isinstance(obj, type) else type(obj)).__mro__:
        module = getattr(cls, "__module__", "") or ""
        if module in ("builtins", "abc", "typing") or module.startswith("reidplug.core"):
            continue
        modules.add(module)
        top = module.split(".")[0]
        if top != "reidplug":  # a third-party plugin: any module of its package is its code
            packages.add(top + ".")
            modules.add(top)
    return modules, packages


def blame(exc: BaseException, components: list[tuple[Any, Owner]]) -> PluginFault | None:
    """A PluginFault naming the component whose code raised `exc`, or None when none of them did.

    The frame nearest to the error that lies in a component's code decides; the method
    named is the outermost frame of that component (the call reidplug made).
    """
    if isinstance(exc, UserError):
        return None
    frames = []  # (module, function), outermost first
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_globals.get("__name__", ""), tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    best = None  # (nearest frame index, first frame index, owner)
    for obj, owner in components:
        names, packages = _modules_of(obj)

        def ours(module: str, names=names, packages=packages) -> bool:
            return module in names or any(module.startswith(p) for p in packages)

        hits = [i for i, (module, _) in enumerate(frames) if ours(module)]
        if not hits or (best is not None and hits[-1] <= best[0]):
            continue
        first = hits[-1]
        while first > 0 and ours(frames[first - 1][0]):
            first -= 1
        best = (hits[-1], first, owner)
    if best is None:
        return None
    _, first, owner = best
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = f"{owner.describe()} failed in {frames[first][1]}(): {reason}"
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return PluginFault(message, component=f"{owner.role} {owner.name}", plugin=owner.plugin, detail=detail)


def import_fault(exc: ImportError, owner: Owner, key: str) -> PluginFault:
    """A component's constructor needs a module that is not installed."""
    missing = getattr(exc, "name", None)
    if missing:
        what = f"needs the module {missing!r}, which is not installed ({type(exc).__name__}: {exc})"
        hint = f"; install it or choose another {key}"
    else:
        what = f"failed to import a module ({type(exc).__name__}: {exc})"
        hint = f"; fix the installation or choose another {key}"
    return PluginFault(f"{owner.describe()} {what}{hint}", component=f"{owner.role} {owner.name}", plugin=owner.plugin)
