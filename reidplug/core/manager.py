"""The plugin manager: specs, then entry points, then the builtin plugins."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

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
    "reidplug.plugins.schedulers.bohb_async",
    "reidplug.plugins.schedulers.pbt",
    "reidplug.plugins.schedulers.pb2",
    "reidplug.plugins.executors.local",
    "reidplug.plugins.executors.ray",
    "reidplug.plugins.reporters.console",
    "reidplug.plugins.reporters.files",
    "reidplug.plugins.reporters.tensorboard",
    "reidplug.plugins.reporters.mlflow",
    "reidplug.plugins.data_commands",
    "reidplug.plugins.report_command",
    "reidplug.plugins.plugins_command",
    "reidplug.plugins.deploy_commands",
)
BUILTIN_PREFIX = "reidplug.plugins."


class ReidplugPluginManager(pluggy.PluginManager):
    """A pluggy manager that also knows where each plugin came from and which plugins are disabled."""

    def __init__(self):
        super().__init__(hookspecs.PROJECT)
        #: plugin name -> where it came from; disabled plugins too, with `error` set
        self.origins: dict[str, PluginOrigin] = {}
        #: plugin name -> why it is disabled ("(from dist version): reason"), shown with unknown component names
        self.failed: dict[str, str] = {}
        self._registries: dict[str, Registry] | None = None

    def registry(self, kind: str) -> Registry:
        if self._registries is None:
            self._registries = collect_registries(self)
        return self._registries[kind]

    def disable(self, name: str, reason: str) -> None:
        """Take plugin `name` out (if registered) and warn once, naming its distribution and version."""
        origin = self.origins.get(name) or PluginOrigin(name, "?", "?", builtin=False)
        origin.error = reason
        origin.components.clear()
        self.origins[name] = origin
        self.failed[name] = f"(from {origin.distribution} {origin.version}): {reason}"
        plugin = self.get_plugin(name)
        if plugin is not None:
            self.unregister(plugin, name=name)
        warnings.warn(
            f"reidplug plugin {name!r} is disabled {self.failed[name]}",
            RuntimeWarning,
            stacklevel=3,
        )


@dataclass
class PluginOrigin:
    name: str
    distribution: str
    version: str
    builtin: bool
    components: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None  # why the plugin is disabled; None while it works


def blocked_names(env: dict | None = None) -> set[str]:
    raw = (env if env is not None else os.environ).get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def builtin_name(module: str) -> str:
    return module[len(BUILTIN_PREFIX):] if module.startswith(BUILTIN_PREFIX) else module


def get_plugin_manager(*, entry_points: bool = True, builtins=DEFAULT_PLUGINS) -> ReidplugPluginManager:
    """A fresh manager: specs, then entry points of group `reidplug`, then builtins.

    A plugin that cannot be used (its module fails to import, a hook name matches no
    specification, a hook's arguments do not match) is disabled with one warning; the
    others and every command keep working.
    """
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
        origin = PluginOrigin(name, "reidplug", __version__, builtin=True)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a builtin whose optional dependency is broken must not take the others down
            pm.origins[name] = origin
            pm.disable(name, import_failure(exc))
            continue
        add_plugin(pm, module, origin)
    check_pending(pm)
    return pm


def _load_entry_points(pm: ReidplugPluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        dist = getattr(ep, "dist", None)
        origin = PluginOrigin(
            ep.name,
            dist.metadata["Name"] if dist is not None else "?",
            dist.version if dist is not None else "?",
            builtin=False,
        )
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            pm.origins[ep.name] = origin
            pm.disable(ep.name, import_failure(exc))
            continue
        add_plugin(pm, plugin, origin)


def import_failure(exc: BaseException) -> str:
    """Why a module failed to import, naming the missing module and where the error was raised."""
    what = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"its module failed to import: it needs module {exc.name!r}, which is not installed ({what})"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"its module failed to import: {what}{where}"


def spec_names() -> list[str]:
    """The names of every hook specification."""
    return sorted(n for n, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec"))


def unknown_hooks(pm: pluggy.PluginManager, plugin) -> list[str]:
    """Hook implementations of `plugin` that match no specification (misspelled hook names)."""
    specs = set(spec_names())
    unknown = []
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None or opts.get("optionalhook"):
            continue
        hook = opts.get("specname") or attr
        if hook not in specs:
            unknown.append(hook)
    return unknown


def did_you_mean(hook: str) -> str:
    close = difflib.get_close_matches(hook, spec_names(), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def add_plugin(pm: ReidplugPluginManager, plugin, origin: PluginOrigin) -> bool:
    """Register `plugin` under `origin.name`, or disable it when its hooks do not fit the specifications."""
    pm.origins[origin.name] = origin
    unknown = unknown_hooks(pm, plugin)
    if unknown:
        pm.disable(origin.name, "; ".join(
            f"hook {hook!r} matches no hook specification{did_you_mean(hook)}" for hook in unknown))
        return False
    try:
        pm.register(plugin, name=origin.name)
    except pluggy.PluginValidationError as exc:  # a hook whose arguments are not the specification's
        pm.disable(origin.name, "a hook's arguments are not its specification's: " + " ".join(str(exc).split()))
        return False
    return True


def check_pending(pm: pluggy.PluginManager) -> None:
    """A hookimpl that matches no spec (a misspelled hook) is an error naming its plugin.

    Plugins loaded by `get_plugin_manager` are checked one by one as they are added, and
    disabled rather than refused; this catches plugins registered by hand afterwards.
    """
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        raise PluginError(f"plugin {name!r}: {exc}") from None


def collect_registries(pm: ReidplugPluginManager) -> dict[str, Registry]:
    """Call every `register_<kind>s` hook, recording which plugin registered what.

    A registration hook that raises disables its plugin (and drops what it registered);
    a name registered twice stays an error naming both plugins.
    """
    registries = {kind: Registry(kind) for kind in KINDS}
    for reg in registries.values():
        reg.failed = pm.failed
    for kind in KINDS:
        caller = getattr(pm.hook, f"register_{kind}s")
        # Called one implementation at a time so that each name knows its owner;
        # pluggy lists implementations last-registered first, so reverse it.
        for impl in reversed(caller.get_hookimpls()):
            owner = impl.plugin_name
            if owner in pm.failed:
                continue

            def register(name, factory, *, aliases=(), description="", _owner=owner, _kind=kind):
                registries[_kind].register(name, factory, owner=_owner, aliases=aliases, description=description)
                origin = pm.origins.get(_owner)
                if origin is not None:
                    origin.components.setdefault(_kind, []).append(name)

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                for reg in registries.values():
                    reg.drop_owner(owner)
                pm.disable(owner, f"its hook register_{kind}s raised {type(exc).__name__}: {exc}")
    return registries


def add_commands(pm: ReidplugPluginManager, cli) -> None:
    """Call each plugin's `register_commands(cli)`; one that raises is disabled, its commands removed."""
    for impl in reversed(pm.hook.register_commands.get_hookimpls()):
        before = dict(cli.commands)
        try:
            impl.function(cli=cli)
        except Exception as exc:
            cli.commands.clear()
            cli.commands.update(before)
            pm.disable(impl.plugin_name, f"its hook register_commands raised {type(exc).__name__}: {exc}")


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
