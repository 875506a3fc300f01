"""Plugins that cannot be used are disabled one by one, named, and listed; everything else keeps working."""

from __future__ import annotations

import json
import textwrap
import warnings

import pytest
from conftest import run_cli

from reidplug.core.errors import UnknownComponentError
from reidplug.core.manager import get_plugin_manager

GOOD = """
from reidplug.core.hookspecs import hookimpl
from reidplug.core.searcher import Searcher

class Middle(Searcher):
    def _suggest(self, trial_id):
        return {name: d.from_unit(0.5) for name, d in self.space.items()}

@hookimpl
def register_searchers(register):
    register("middle", Middle, aliases=("centre",), description="always the middle of the space")
"""

TYPO = """
from reidplug.core.hookspecs import hookimpl

@hookimpl
def register_searcherz(register):
    register("never", object)
"""

MISSING_MODULE = """
import rpf_no_such_library  # the plugin's dependency is not installed
"""

RAISES_IN_HOOK = """
from reidplug.core.hookspecs import hookimpl

@hookimpl
def register_schedulers(register):
    register("halfway", object)
    raise KeyError("oops")
"""

RAISES_IN_COMMANDS = """
import click
from reidplug.core.hookspecs import hookimpl

@click.command("half-added")
def half_added():
    pass

@hookimpl
def register_commands(cli):
    cli.add_command(half_added)
    raise RuntimeError("no commands today")
"""

WRONG_ARGUMENTS = """
from reidplug.core.hookspecs import hookimpl

@hookimpl
def register_reporters(registrar):
    pass
"""

PLUGINS = {  # entry point name -> (distribution, module name, source)
    "rpf-good": ("rpf-good-dist", "rpf_good", GOOD),
    "rpf-typo": ("rpf-typo-dist", "rpf_typo", TYPO),
    "rpf-missing": ("rpf-missing-dist", "rpf_missing", MISSING_MODULE),
    "rpf-raises": ("rpf-raises-dist", "rpf_raises", RAISES_IN_HOOK),
    "rpf-args": ("rpf-args-dist", "rpf_args", WRONG_ARGUMENTS),
    "rpf-cmd": ("rpf-cmd-dist", "rpf_cmd", RAISES_IN_COMMANDS),
}
DISABLED = ("rpf-typo", "rpf-missing", "rpf-raises", "rpf-args", "rpf-cmd")


def write_distribution(site, dist: str, version: str, module: str, source: str, entry_point: str) -> None:
    """An installed distribution as importlib.metadata sees one: a module and its .dist-info folder."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[reidplug]\n{entry_point} = {module}\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("faulty-site")
    for ep, (dist, module, source) in PLUGINS.items():
        write_distribution(site, dist, "2.0.1", module, source, ep)
    return site


@pytest.fixture
def loaded(site, monkeypatch):
    """A manager built with the site on sys.path, and the warnings it gave."""
    monkeypatch.syspath_prepend(str(site))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = get_plugin_manager()
        for kind in ("searcher", "scheduler", "reporter"):
            pm.registry(kind)
    for _, module, _ in PLUGINS.values():
        monkeypatch.delitem(__import__("sys").modules, module, raising=False)
    return pm, [str(w.message) for w in caught if "rpf-" in str(w.message)]


def _one_warning(messages, plugin):
    mine = [m for m in messages if f"'{plugin}'" in m]
    assert len(mine) == 1, messages
    return mine[0]


def test_a_misspelled_hook_disables_only_its_plugin_and_suggests_the_name(loaded):
    pm, messages = loaded
    msg = _one_warning(messages, "rpf-typo")
    assert "rpf-typo-dist 2.0.1" in msg and "'register_searcherz'" in msg
    assert "did you mean 'register_searchers'" in msg
    assert pm.get_plugin("rpf-typo") is None and "never" not in pm.registry("searcher")
    # the others are untouched: builtins, and a third-party plugin found through its alias
    assert "random" in pm.registry("searcher") and pm.registry("searcher").entry("centre").name == "middle"


def test_a_module_that_fails_to_import_is_named_with_its_distribution(loaded):
    pm, messages = loaded
    msg = _one_warning(messages, "rpf-missing")
    assert "rpf-missing-dist 2.0.1" in msg and "'rpf_no_such_library'" in msg
    origin = pm.origins["rpf-missing"]
    assert (origin.distribution, origin.version) == ("rpf-missing-dist", "2.0.1")
    assert "rpf_no_such_library" in origin.error


def test_a_raising_hook_or_a_wrong_signature_disables_the_plugin(loaded):
    pm, messages = loaded
    assert "KeyError" in _one_warning(messages, "rpf-raises")
    assert "halfway" not in pm.registry("scheduler") and "fifo" in pm.registry("scheduler")
    assert pm.origins["rpf-raises"].components == {}
    assert "registrar" in _one_warning(messages, "rpf-args")
    assert set(DISABLED) - {"rpf-cmd"} <= set(pm.failed)


def test_a_component_of_a_disabled_plugin_is_unknown_with_the_reason(loaded):
    pm, _ = loaded
    with pytest.raises(UnknownComponentError) as info:
        pm.registry("searcher").get("never", config_key="TUNE.SEARCHER")
    assert "plugin 'rpf-typo' is disabled (from rpf-typo-dist 2.0.1)" in str(info.value)


@pytest.mark.slow  # four command runs
def test_the_cli_keeps_working_and_lists_disabled_plugins(site, tmp_path):
    env = {"PYTHONPATH": str(site)}
    listing = run_cli("plugins", "--json", env_extra=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    for name in DISABLED:
        row = rows[name]
        assert row["failed"] is True and row["distribution"] == PLUGINS[name][0] and row["version"] == "2.0.1"
        assert listing.stderr.count(f"plugin '{name}'") == 1
    assert "rpf_no_such_library" in rows["rpf-missing"]["error"]
    assert "did you mean 'register_searchers'" in rows["rpf-typo"]["error"]
    assert rows["rpf-good"]["details"] == {
        "searcher": [{"name": "middle", "aliases": ["centre"], "description": "always the middle of the space"}]}
    assert "failed" not in rows["rpf-good"]

    table = run_cli("plugins", env_extra={**env, "COLUMNS": "250"}, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    cells = {}  # plugin -> its first line's cells
    for line in table.stdout.splitlines():
        row = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(row) == 4 and row[0]:
            cells[row[0]] = row
    assert cells["rpf-typo"][1:3] == ["2.0.1", "rpf-typo-dist"]
    assert cells["rpf-missing"][1:3] == ["2.0.1", "rpf-missing-dist"] and cells["rpf-missing"][3].startswith("DISABLED")
    assert "(aliases: centre)" in table.stdout and "always the middle" in table.stdout

    helped = run_cli("--help", env_extra=env, cwd=tmp_path)
    assert helped.returncode == 0 and "plugins" in helped.stdout and "report" in helped.stdout
    assert "half-added" not in helped.stdout  # what the raising hook added is taken back
    assert helped.stderr.count("plugin 'rpf-cmd'") == 1
    config = tmp_path / "search.yml"
    config.write_text("TUNE:\n  TRAINABLE: noop\n  SEARCHER: centre\n  SPACE:\n    x: {uniform: [0, 1]}\n")
    checked = run_cli("config", "validate", config, env_extra=env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "ok" in checked.stdout
