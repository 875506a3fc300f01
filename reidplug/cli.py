"""The `reidplug` command line: parse, call, print."""

from __future__ import annotations

import signal
import sys
import warnings
from pathlib import Path

import click

from reidplug import __version__
from reidplug.core.errors import UserError

OVERRIDES = click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reidplug")
def cli():
    """Person re-identification training and hyperparameter search, built from plugins.

    \b
      reidplug train CONFIG [KEY=VALUE]...   train one model
      reidplug run CONFIG [KEY=VALUE]...     search (the config's TUNE section)
      reidplug eval CONFIG MODEL.WEIGHTS=... evaluate a checkpoint
    """


# ------------------------------------------------------------------ search

REPORT = click.option("--report/--no-report", default=True, show_default=True,
                      help="Write the plots and report.html (as `reidplug report`) when the search ends.")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@OVERRIDES
@click.option("--resume", is_flag=True, help="Continue the experiment in OUTPUT_DIR/TUNE.NAME after a stop or crash.")
@click.option("--fresh", is_flag=True, help="Start over; an existing experiment folder is moved aside, not deleted.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and the final summary (for logs and CI).")
@REPORT
def run(config, overrides, resume, fresh, quiet, report):
    """Search hyperparameters as the config's TUNE section says; write best_config.yaml."""
    from reidplug.core.tuner import Tuner

    if resume and fresh:
        raise click.UsageError("--resume and --fresh exclude each other")
    overrides = list(overrides) + (["TUNE.CONSOLE.QUIET=true"] if quiet else [])
    _starting(f"{'resuming' if resume else 'starting'} the search in {config}", quiet)
    summary = _search(Tuner(config, overrides, resume=resume, fresh=fresh), report)
    if summary["best_trial"] is None:
        sys.exit(1)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and the final summary.")
@REPORT
def resume(directory, quiet, report):
    """Continue the experiment stored in DIRECTORY (after a stop or a crash)."""
    from reidplug.core.tuner import Tuner

    folder = Path(directory)
    config = folder / "experiment.yaml"
    if not (folder / "experiment.db").is_file() or not config.is_file():
        raise UserError(f"{folder}: not an experiment folder (no experiment.db / experiment.yaml)")
    overrides = [f"OUTPUT_DIR={folder.resolve().parent}", f"TUNE.NAME={folder.name}"]
    if quiet:
        overrides.append("TUNE.CONSOLE.QUIET=true")
    _starting(f"resuming the search in {folder}", quiet)
    _search(Tuner(str(config), overrides, resume=True), report)


def _starting(what: str, quiet: bool) -> None:
    # Checks, plugin loading and data preparation come first and can take a while: say so at once.
    if not quiet:
        click.echo(f"[reidplug] {what}: checking the config and preparing the data")


def _search(tuner, report: bool) -> dict:
    """Run a search; after an interrupt, say how to continue it (the folder holds its whole config)."""
    folder = tuner.experiment.dir

    def on_sigint(signum, frame):
        # The tuner handles Ctrl-C while it runs and hands this back as it returns. Once it has
        # stopped for an interrupt, the process is on its way out with the resume hint.
        if not tuner.interrupted:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        summary = tuner.run()
    except KeyboardInterrupt:  # a second Ctrl-C: out at once, the journal has what was committed
        _exit_interrupted(folder)
    signal.signal(signal.SIGINT, signal.SIG_IGN if tuner.interrupted else previous)
    _print_summary(summary)
    if summary.get("stopped_reason") == "interrupted":
        # no report: whoever pressed Ctrl-C wants out, and `reidplug report` draws it any time
        _exit_interrupted(folder)
    if report:
        _write_report(summary)
    return summary


def _exit_interrupted(folder) -> None:
    # Further presses while on the way out are ignored. A Python handler would not do: the
    # interpreter puts SIGINT back to the default action as it shuts down, so a press then
    # would kill the process by the signal instead of letting it exit 130.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    click.echo(f"Interrupted. Continue with: reidplug resume {folder}", err=True)
    sys.exit(130)


def _print_summary(summary: dict) -> None:
    from reidplug.core.summary import format_summary

    click.echo(format_summary(summary))


def _write_report(summary: dict) -> None:
    if not summary.get("num_trials"):
        return
    from reidplug.report.build import build_report

    try:
        doc = build_report(summary["dir"])
    except Exception as exc:  # the search itself succeeded: its results stay, only the plots are missing
        click.echo(f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
                   f"retry with: reidplug report {summary['dir']}", err=True)
        return
    click.echo(f"Plots and report: {doc['out_dir']}/report.html")


# ------------------------------------------------------------------ training


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@OVERRIDES
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUTPUT_DIR.")
@click.option("--num-gpus", type=int, default=1, show_default=True,
              help="Processes on this machine, one per GPU (CPU processes with MODEL.DEVICE=cpu); DDP when more than one.")
@click.option("--num-machines", type=int, default=1, show_default=True, help="Machines taking part.")
@click.option("--machine-rank", type=int, default=0, show_default=True, help="The rank of this machine (unique per machine).")
@click.option("--dist-url", default="auto", show_default=True,
              help="tcp://HOST:PORT of machine 0, the same on every machine; auto: a free port, one machine only.")
def train(config, overrides, resume, num_gpus, num_machines, machine_rank, dist_url):
    """Train one Re-ID model, evaluate it, and save checkpoints and model_final.pth in OUTPUT_DIR."""
    from reidplug.reid.api import train as train_model

    train_model(config, list(overrides), resume=resume, num_gpus=num_gpus, num_machines=num_machines,
                machine_rank=machine_rank, dist_url=dist_url)


@cli.command(name="eval")
@click.argument("config", type=click.Path(dir_okay=False))
@OVERRIDES
@click.option("--vis", type=int, default=0, metavar="N", help="Also draw rank lists of N queries and the CMC curve.")
def eval_(config, overrides, vis):
    """Evaluate a checkpoint (MODEL.WEIGHTS=OUTPUT_DIR/model_final.pth, say) on DATASETS.TESTS; print the table."""
    from reidplug.reid.api import evaluate

    evaluate(config, list(overrides), vis=vis)


# ------------------------------------------------------------------ config
# (`reidplug plugins` is registered by reidplug.plugins.plugins_command)


@cli.group()
def config():
    """Show or check config files."""


@config.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@OVERRIDES
def config_show(file, overrides):
    """Print the merged config: _BASE_ chain, schema defaults and overrides applied."""
    from reidplug.core.config import load_config, to_yaml

    click.echo(to_yaml(load_config(file, list(overrides))), nl=False)


@config.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@OVERRIDES
def config_validate(file, overrides):
    """Check a config, its search space and every component name it uses."""
    from reidplug.core.validate import validate

    notes = validate(file, list(overrides))
    click.echo(f"{file}: ok" + (f" ({'; '.join(notes)})" if notes else ""))


# ------------------------------------------------------------------ entry point


def _format_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def main(argv=None) -> None:
    """Run the CLI; a user error prints one line on stderr and exits with code 2."""
    warnings.formatwarning = _format_warning
    try:
        from reidplug.core.manager import add_commands, plugin_manager

        add_commands(plugin_manager(), cli)  # a plugin whose hook raises is disabled, the others' commands stay
        from reidplug.fastreid_argv import rewrite

        argv = rewrite(sys.argv[1:] if argv is None else list(argv))  # FastReID's/FastTune's flags, if used
        cli.main(args=argv, prog_name="reidplug", standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # One line, like every other user error; `--help` shows the usage.
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        message = " ".join(exc.format_message().split())
        if isinstance(exc, click.NoSuchOption) and not exc.possibilities:
            from reidplug.fastreid_argv import unknown_option_hint

            message = message.rstrip(".") + unknown_option_hint(exc.option_name)
        click.echo(f"error: {where}{message}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
