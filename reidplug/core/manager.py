"""The plugin manager: specs, then entry points, then the builtin plugins."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from dataclasses import dataclass, field

import pluggy

from reidplug.core import hookspecs
from reidplug.core.errors import PluginError
from reidplug.core.registry import KINDS, Registry

ENTRY_POINT_GROUP = "reidplug"
DISABLE_ENV = "REIDPLUG_DISABLE_PLUGINS"

# Builtins are plain plugin modules, registered through the same hooks as third-party ones.
DEFAULT_PLUGINS = (
    "reidplug.plugins.trainers",
    "reidplug.plugins.trainables",
    "reidplug.plugins.datasets",
    "reidplug.plugins.backbones",
    "reidplug.plugins.searchers.random",
    "reidplug.plugins.searchers.grid",
    "reidplug.plugins.searchers.hyperopt",
    "reidplug.plugins.searchers.nevergrad",
    "reidplug.plugins.searchers.bohb",
    "reidplug.plugins.schedulers.fifo",
    "reidplug.plugins.schedulers.asha",
    "reidplug.plugins.schedulers.hyperband",
    "reidplug.plugins.schedulers.bohb",
    "reidplug.plugins.schedulers.pbt",
    "reidplug.plugins.executors.local",
    "reidplug.plugins.executors.ray",
    "reidplug.plugins.reporters.console",
    "reidplug.plugins.reporters.files",
    "reidplug.plugins.reporters.tensorboard",
    "reidplug.plugins.reporters.mlflow",
    "reidplug.plugins.data_commands",
    "reidplug.plugins.report_command",
    "reidplug.plugins.deploy_commands",
)
BUILTIN_PREFIX = "reidplug.plugins."


class ReidplugPluginManager(pluggy.PluginManager):
    """A pluggy manager that also knows where each plugin came from."""

    def __init__(self):
        super().__init__(hookspecs.PROJECT)
        self.origins: dict[str, PluginOrigin] = {}
        self.failed: dict[str, str] = {}
        self._registries: dict[str, Registry] | None = None

    def registry(self, kind: str) -> Registry:
        if self._registries is None:
            self._registries = collect_registries(self)
        return self._registries[kind]


@dataclass
class PluginOrigin:
    name: str
    distribution: str
    version: str
    builtin: bool
    components: dict[str, list[str]] = field(default_factory=dict)


def blocked_names(env: dict | None = None) -> set[str]:
    raw = (env if env is not None else os.environ).get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def builtin_name(module: str) -> str:
    return module[len(BUILTIN_PREFIX):] if module.startswith(BUILTIN_PREFIX) else module


def get_plugin_manager(*, entry_points: bool = True, builtins=DEFAULT_PLUGINS) -> ReidplugPluginManager:
    """A fresh manager: specs, then entry points of group `reidplug`, then builtins."""
    from reidplug import __version__

    pm = ReidplugPluginManager()
    pm.add_hookspecs(hookspecs)
    for name in blocked_names():
        pm.set_blocked(name)
    if entry_points:
        _load_entry_points(pm)
    for module_name in builtins:
        name = builtin_name(module_name)
        if pm.is_blocked(name):
            continue
        pm.register(importlib.import_module(module_name), name=name)
        pm.origins[name] = PluginOrigin(name, "reidplug", __version__, builtin=True)
    check_pending(pm)
    return pm


def _load_entry_points(pm: ReidplugPluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            msg = f"{type(exc).__name__}: {exc}"
            pm.failed[ep.name] = f"({dist_name} {version}) {msg}"
            warnings.warn(
                f"reidplug plugin {ep.name!r} (from {dist_name} {version}) failed to import and is skipped: {msg}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        pm.register(plugin, name=ep.name)
        pm.origins[ep.name] = PluginOrigin(ep.name, dist_name, version, builtin=False)


def check_pending(pm: pluggy.PluginManager) -> None:
    """A hookimpl that matches no spec (a misspelled hook) is an error naming its plugin."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        raise PluginError(f"plugin {name!r}: {exc}") from None


def collect_registries(pm: ReidplugPluginManager) -> dict[str, Registry]:
    """Call every `register_<kind>s` hook, recording which plugin registered what."""
    registries = {kind: Registry(kind) for kind in KINDS}
    for reg in registries.values():
        reg.failed = pm.failed
    for kind in KINDS:
        caller = getattr(pm.hook, f"register_{kind}s")
        # Called one implementation at a time so that each name knows its owner;
        # pluggy lists implementations last-registered first, so reverse it.
        for impl in reversed(caller.get_hookimpls()):
            owner = impl.plugin_name

            def register(name, factory, *, aliases=(), description="", _owner=owner, _kind=kind):
                registries[_kind].register(name, factory, owner=_owner, aliases=aliases, description=description)
                origin = pm.origins.get(_owner)
                if origin is not None:
                    origin.components.setdefault(_kind, []).append(name)

            impl.function(register=register)
    return registries


_default: ReidplugPluginManager | None = None


def plugin_manager() -> ReidplugPluginManager:
    """The process-wide manager, built on first use."""
    global _default
    if _default is None:
        _default = get_plugin_manager()
    return _default


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests; after changing blocked plugins)."""
    global _default
    _default = None


def registry(kind: str) -> Registry:
    return plugin_manager().registry(kind)
