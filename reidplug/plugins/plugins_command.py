"""The `reidplug plugins` command: every plugin, where it came from and what it registered, disabled ones too."""

from __future__ import annotations

import json

import click

from reidplug.core.hookspecs import hookimpl


def plugin_rows(pm) -> list[dict]:
    """One row per plugin, working or disabled: name, version, distribution, components with their aliases
    and descriptions, and for a disabled plugin `failed` and `error`."""
    from reidplug.core.registry import KINDS

    details: dict[str, dict[str, list[dict]]] = {}
    for kind in KINDS:
        for entry in pm.registry(kind):  # also fills each origin's component list
            details.setdefault(entry.owner, {}).setdefault(kind, []).append(
                {"name": entry.name, "aliases": list(entry.aliases), "description": entry.description})
    rows = []
    for name, origin in pm.origins.items():
        row = {
            "name": name,
            "version": origin.version,
            "distribution": origin.distribution,
            "builtin": origin.builtin,
            "components": {k: sorted(v) for k, v in origin.components.items()},
            "details": {k: sorted(v, key=lambda d: d["name"]) for k, v in details.get(name, {}).items()},
        }
        if origin.error is not None:
            row.update(failed=True, error=origin.error)
        rows.append(row)
    return rows


def _component_lines(row: dict) -> str:
    if row.get("failed"):
        return f"DISABLED: {row['error']}"
    lines = []
    for kind, entries in sorted(row["details"].items()):
        for d in entries:
            aliases = f" (aliases: {', '.join(d['aliases'])})" if d["aliases"] else ""
            about = f": {d['description']}" if d["description"] else ""
            lines.append(f"{kind} {d['name']}{aliases}{about}")
    return "\n".join(lines) or "(hooks only)"


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json):
    """List plugins: name, version, distribution and the components each registered, disabled ones included."""
    from reidplug.core.manager import plugin_manager

    rows = plugin_rows(plugin_manager())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="reidplug plugins", title_justify="left")
    for col in ("plugin", "version", "distribution", "components"):
        table.add_column(col, overflow="fold")
    # third-party first, disabled ones before the working ones of their group
    for row in sorted(rows, key=lambda r: (r["builtin"], not r.get("failed"), r["name"])):
        table.add_row(row["name"], row["version"], row["distribution"], _component_lines(row))
    Console(width=max(100, Console().width)).print(table)


@hookimpl
def register_commands(cli):
    cli.add_command(plugins)
