"""Subcommands contributed through the register_commands hook."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_commands(cli):
    pass  # filled in as commands land
