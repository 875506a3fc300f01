"""Grid search."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_searchers(register):
    pass  # filled in with the implementation
