"""The plugin manager: builtins, entry points, blocking, isolation, hook validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import install_distribution, run_cli

from reidplug.core import manager
from reidplug.core.errors import PluginError, UnknownComponentError
from reidplug.core.hookspecs import hookimpl
from reidplug.core.manager import DEFAULT_PLUGINS, builtin_name, get_plugin_manager

GOOD = """
from reidplug.core.hookspecs import hookimpl
from reidplug.core.searcher import Searcher

class Constant(Searcher):
    def _suggest(self, trial_id):
        return {name: d.from_unit(0.5) for name, d in self.space.items()}

@hookimpl
def register_searchers(register):
    register("constant", Constant, description="always the middle of the space")
"""

BROKEN = """
raise RuntimeError("this plugin is broken on purpose")
"""

TYPO = """
from reidplug.core.hookspecs import hookimpl

@hookimpl
def register_searcherz(register):
    pass
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """Two real distributions installed into one folder: a good plugin and a broken one."""
    site = tmp_path_factory.mktemp("site")
    install_distribution(site, "rp-good", {"rp_good": GOOD}, {"good": "rp_good"})
    install_distribution(site, "rp-broken", {"rp_broken": BROKEN}, {"broken": "rp_broken"})
    return site


def _python(code: str, site, **env):
    full_env = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=60)


def test_builtins_are_registered_through_the_hooks():
    pm = get_plugin_manager(entry_points=False)
    for module in DEFAULT_PLUGINS:
        assert pm.get_plugin(builtin_name(module)) is not None
    assert "random" in pm.registry("searcher")
    assert "fifo" in pm.registry("scheduler")
    assert "amp" in pm.registry("trainer") and "fp32" in pm.registry("trainer")
    assert pm.origins["searchers.random"].components == {"searcher": ["random"]}
    assert pm.origins["searchers.random"].builtin


def test_blocking_a_builtin_by_name(monkeypatch):
    monkeypatch.setenv(manager.DISABLE_ENV, "searchers.random, schedulers.fifo")
    pm = get_plugin_manager(entry_points=False)
    assert "random" not in pm.registry("searcher")
    assert "fifo" not in pm.registry("scheduler")
    assert "grid" in pm.registry("searcher") or pm.get_plugin("searchers.grid") is not None


@pytest.mark.slow
def test_entry_point_plugin_is_discovered_and_broken_one_isolated(plugin_site):
    code = (
        "import warnings, json\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    from reidplug.core.manager import get_plugin_manager\n"
        "    pm = get_plugin_manager()\n"
        "o = pm.origins['good']\n"
        "print(json.dumps({'dist': o.distribution, 'version': o.version, 'builtin': o.builtin,\n"
        "    'searchers': pm.registry('searcher').names(), 'warnings': [str(x.message) for x in w],\n"
        "    'failed': list(pm.failed)}))\n"
    )
    proc = _python(code, plugin_site)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["dist"] == "rp-good" and out["version"] == "1.2.3" and out["builtin"] is False
    assert "constant" in out["searchers"] and "random" in out["searchers"]
    assert out["failed"] == ["broken"]
    broken = [w for w in out["warnings"] if "broken" in w]
    assert len(broken) == 1 and "rp-broken" in broken[0] and "RuntimeError" in broken[0]


@pytest.mark.slow
def test_entry_point_plugin_can_be_blocked_and_cli_lists_it(plugin_site):
    env = {"PYTHONPATH": str(plugin_site)}
    listing = run_cli("plugins", "--json", env_extra=env)
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["good"]["distribution"] == "rp-good"
    assert rows["good"]["components"] == {"searcher": ["constant"]}
    assert rows["broken"].get("failed") is True
    assert listing.stderr.count("warning:") == 1

    blocked = run_cli("plugins", "--json", env_extra={**env, manager.DISABLE_ENV: "good,broken"})
    names = {row["name"] for row in json.loads(blocked.stdout)}
    assert "good" not in names and "broken" not in names
    assert "warning" not in blocked.stderr


def test_misspelled_hook_is_an_error_naming_the_plugin():
    import types

    module = types.ModuleType("typo_plugin")
    exec(TYPO, module.__dict__)
    pm = get_plugin_manager(entry_points=False)
    pm.register(module, name="typo")
    with pytest.raises(PluginError, match="typo.*register_searcherz"):
        manager.check_pending(pm)


class _Dup:
    @hookimpl
    def register_searchers(self, register):
        register("random", object)


def test_duplicate_name_names_both_owners():
    pm = get_plugin_manager(entry_points=False)
    pm.register(_Dup(), name="dup-plugin")
    with pytest.raises(PluginError) as info:
        pm.registry("searcher")
    assert "searchers.random" in str(info.value) and "dup-plugin" in str(info.value)


def test_unknown_name_lists_known_ones():
    pm = get_plugin_manager(entry_points=False)
    with pytest.raises(UnknownComponentError) as info:
        pm.registry("scheduler").get("fifoo", config_key="TUNE.SCHEDULER")
    msg = str(info.value)
    assert "TUNE.SCHEDULER" in msg and "did you mean 'fifo'" in msg and "known schedulers: " in msg


def test_lazy_references_are_imported_on_first_use():
    pm = get_plugin_manager(entry_points=False)
    entry = pm.registry("executor").entry("local")
    assert entry.load().__name__ == "LocalExecutor"


def test_core_imports_without_torch():
    code = (
        "import sys, reidplug, reidplug.core, reidplug.core.tuner, reidplug.core.experiment\n"
        "from reidplug.core.manager import get_plugin_manager\n"
        "get_plugin_manager().registry('searcher')\n"
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
