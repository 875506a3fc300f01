"""The `reidplug report DIR` command: plots, an HTML page and JSON of an experiment, finished or running."""

from __future__ import annotations

import click

from reidplug.core.hookspecs import hookimpl
from reidplug.core.plural import plural


@click.command("report")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the report (default: DIRECTORY/report).")
@click.option("--json", "as_json", is_flag=True, help="Print the report's data (summary and plot data) as JSON.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (faster; the HTML page has the table only).")
def report(directory, out_dir, as_json, no_plots):
    """Plot an experiment: history, parallel coordinates, learning curves, PBT, importance; report.html.

    Reads the experiment's journal read-only, so it also works while the experiment runs.
    """
    from reidplug.report.build import build_report, dumps

    doc = build_report(directory, out_dir, plots_too=not no_plots)
    if as_json:
        click.echo(dumps(doc), nl=False)
        return
    s = doc["summary"]
    click.echo(f"Experiment {s['name']!r} ({s['state']}): {plural(s['num_trials'], 'trial')}, "
               f"{plural(s['num_results'], 'result')}")
    if s["best_trial"] is not None:
        click.echo(f"Best trial {s['best_trial']}: {s['metric']}={s['best_value']:.4g}")
    for name, note in doc["notes"].items():
        click.echo(f"  {name}: {note}")
    click.echo(f"Report: {doc['out_dir']}/report.html")


@hookimpl
def register_commands(cli):
    cli.add_command(report)
