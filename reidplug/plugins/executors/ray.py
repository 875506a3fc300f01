"""Runs trials as Ray actors."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_executors(register):
    pass  # filled in with the implementation
